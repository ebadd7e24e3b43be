"""The style sheet and the one script of the HTML pages, inlined: the pages need no other file."""

from __future__ import annotations

from typing import Final

STYLE: Final = """
:root { font-family: system-ui, "DejaVu Sans", sans-serif; color: #1d2433; background: #f6f7f9; }
body { margin: 0 auto; max-width: 1400px; padding: 0 24px 48px; }
header { display: flex; gap: 24px; align-items: baseline; border-bottom: 1px solid #d8dce3; }
header a { color: #2f5bd3; text-decoration: none; }
h1 { font-size: 22px; margin: 18px 0 12px; }
h2 { font-size: 17px; margin: 28px 0 10px; }
table { border-collapse: collapse; background: #fff; width: 100%; font-size: 14px; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid #e4e7ec; }
th { background: #eef1f5; font-weight: 600; }
tr.stalled td { background: #fff4e5; }
code, pre, .mono { font-family: "DejaVu Sans Mono", monospace; font-size: 13px; }
pre { background: #fff; border: 1px solid #d8dce3; padding: 12px; overflow-x: auto; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 13px;
         background: #e3e8f2; }
.badge.Completed { background: #d7f2dd; } .badge.Cancelled { background: #f7dada; }
.badge.Escalated { background: #ffd8a8; }
.badge.warn { background: #ffd8a8; }
.counts { display: flex; flex-wrap: wrap; gap: 8px; margin: 8px 0; }
.counts a { padding: 4px 10px; border-radius: 6px; background: #fff; border: 1px solid #d8dce3;
            color: inherit; text-decoration: none; font-size: 14px; }
.counts a.has-stalled { border-color: #e8590c; background: #fff4e5; }
form.filters { display: flex; gap: 14px; align-items: center; margin: 12px 0; }
dl { display: grid; grid-template-columns: max-content auto; gap: 4px 18px; }
dt { color: #5b6478; } dd { margin: 0; }
svg.diagram { background: #fff; border: 1px solid #d8dce3; max-width: 100%; height: auto; }
svg .edge { fill: none; stroke: #8a94a6; stroke-width: 1.2; opacity: .7; }
svg .node rect { fill: #e8eefc; stroke: #4c6ef5; stroke-width: 1.4; }
svg .node.terminal rect { fill: #e6f4ea; stroke: #2b8a3e; }
svg .node.stalled rect { fill: #ffe8cc; stroke: #e8590c; stroke-width: 2.5; }
svg text { text-anchor: middle; font-size: 13px; fill: #1d2433; }
svg text.count { font-size: 12px; fill: #5b6478; }
svg .node.stalled text.count { fill: #c2410c; font-weight: 600; }
#cancel { display: grid; grid-template-columns: max-content 320px; gap: 6px 12px; }
#cancel button { grid-column: 2; justify-self: start; }
#cancel-result.refused { color: #c92a2a; font-weight: 600; }
#cancel-result.accepted { color: #2b8a3e; font-weight: 600; }
.muted { color: #5b6478; }
"""

CANCEL_SCRIPT: Final = """
document.getElementById("cancel").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const out = document.getElementById("cancel-result");
  out.className = "";
  out.textContent = "sending...";
  const response = await fetch(form.action, {
    method: "POST",
    headers: {
      "Authorization": "Bearer " + form.elements.token.value,
      "Content-Type": "application/json",
    },
    body: JSON.stringify({
      reason: form.elements.reason.value,
      requested_by: form.elements.requested_by.value,
    }),
  });
  const body = await response.json().catch(() => ({}));
  out.className = response.ok ? "accepted" : "refused";
  out.textContent = response.ok
    ? response.status + " Accepted: CancelProcess " + body.message_id + " sent; reload to follow."
    : response.status + " " + response.statusText + ": " + (body.error || "refused");
});
"""
