// The approval page: reads the request with the approver's own token, and approves or denies
// only when the approver presses a button. Nothing is written into the page as HTML.
(function () {
  "use strict";
  const id = document.getElementById("request-id").textContent.trim();
  const status = document.getElementById("status");
  let token = "";

  function say(text) { status.textContent = text; }

  async function call(method, path, body) {
    const resp = await fetch(path, {
      method: method,
      headers: Object.assign(
        { "Authorization": "Bearer " + token },
        body ? { "Content-Type": "application/json" } : {}),
      body: body ? JSON.stringify(body) : undefined,
      credentials: "omit",
      cache: "no-store",
    });
    const data = await resp.json().catch(function () { return {}; });
    if (!resp.ok) { throw new Error(data.detail || ("HTTP " + resp.status)); }
    return data;
  }

  function show(req) {
    const facts = document.getElementById("facts");
    facts.replaceChildren();
    const rows = [
      ["Who", req.requester], ["Access", req.entitlement || req.profile],
      ["For", req.duration], ["Reason", req.reason], ["Ticket", req.ticket],
      ["State", req.state], ["Decide by", req.decide_by],
    ];
    for (const [k, v] of rows) {
      if (v === undefined || v === null || v === "") { continue; }
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = String(v);
      facts.append(dt, dd);
    }
    document.getElementById("details").hidden = false;
  }

  document.getElementById("signin").addEventListener("submit", async function (ev) {
    ev.preventDefault();
    token = document.getElementById("token").value.trim();
    try { show(await call("GET", "/v1/requests/" + encodeURIComponent(id))); say(""); }
    catch (e) { say("Cannot show the request: " + e.message); }
  });

  document.getElementById("approve").addEventListener("click", async function () {
    const comment = document.getElementById("comment").value.trim();
    try {
      const r = await call("POST", "/v1/requests/" + encodeURIComponent(id) + "/approve",
        comment ? { comment: comment } : {});
      show(r); say("Approved: the request is " + r.state + ".");
    } catch (e) { say("Not approved: " + e.message); }
  });

  document.getElementById("deny").addEventListener("click", async function () {
    const reason = document.getElementById("comment").value.trim();
    try {
      const r = await call("POST", "/v1/requests/" + encodeURIComponent(id) + "/deny", { reason: reason });
      show(r); say("Denied.");
    } catch (e) { say("Not denied: " + e.message); }
  });
}());
