#!/bin/sh
# The demo target, driven by Hourglass's exec connector. It keeps a file that says who holds
# what right now, one line per grant:  PRINCIPAL ENTITLEMENT until EXPIRES_AT GRANT_ID
# Every operation is idempotent (it may run again for the same grant after a crash).
set -eu
file="${HOURGLASS_DEMO_ACCESS_FILE:?}"
op="${1:?usage: demo-target.sh grant|extend|revoke|inspect}"
touch "$file"
exec 9>>"$file.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi
case "$op" in
  grant)
    if ! grep -q " ${HOURGLASS_GRANT_ID}\$" "$file"; then
      printf '%s %s until %s %s\n' "$HOURGLASS_PRINCIPAL" "$HOURGLASS_ENTITLEMENT" \
        "$HOURGLASS_EXPIRES_AT" "$HOURGLASS_GRANT_ID" >> "$file"
    fi
    ;;
  extend)
    sed "s|until [^ ]* ${HOURGLASS_GRANT_ID}\$|until ${HOURGLASS_EXPIRES_AT} ${HOURGLASS_GRANT_ID}|" "$file" > "$file.tmp"
    mv "$file.tmp" "$file"
    ;;
  revoke)
    grep -v " ${HOURGLASS_GRANT_ID}\$" "$file" > "$file.tmp" || true
    mv "$file.tmp" "$file"
    ;;
  inspect)
    if grep -q " ${HOURGLASS_GRANT_ID}\$" "$file"; then echo present; else echo absent; fi
    ;;
  *)
    echo "unknown operation: $op" >&2
    exit 2
    ;;
esac
