//! Input layout shared by the targets: header lines, then a body, so that seeds stay readable
//! text files (`fuzz/seeds/<target>/`).

/// Splits `n` lines off the front; an empty line is `None`. The rest is the body.
pub fn headers(data: &[u8], n: usize) -> (Vec<Option<&str>>, &[u8]) {
    let mut rest = data;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let (line, after) = match rest.iter().position(|b| *b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        out.push(std::str::from_utf8(line).ok().filter(|s| !s.is_empty()));
        rest = after;
    }
    (out, rest)
}
