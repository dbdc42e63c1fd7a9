// The seedship dashboard: reads /api/*, follows /api/events (server-sent events) and redraws
// the view in place when something changes. No framework, no inline script (CSP).
"use strict";

const view = document.getElementById("view");
const live = document.getElementById("live");

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children.flat()) e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return e;
}

function bytes(n) {
  if (n == null) return "-";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}

function table(headers, rows, empty) {
  if (!rows.length) return el("p", { class: "empty" }, empty || "none");
  return el("table", {}, el("tr", {}, headers.map((h) => el("th", {}, h))), rows.map((r) => el("tr", {}, r.map((c) => el("td", {}, c)))));
}

function link(job) { return el("a", { href: "#/seed/" + encodeURIComponent(job), "data-seed": job }, job); }

async function api(path) {
  const r = await fetch(path, { credentials: "same-origin" });
  if (r.status === 401) { location.reload(); throw new Error("logged out"); }
  if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.statusText);
  return r.json();
}

// The last action's answer, kept across redraws.
let lastResult = { id: "", text: "" };

async function act(url, body, resultId) {
  const r = await fetch(url, {
    method: "POST", credentials: "same-origin",
    headers: { "content-type": "application/json", "x-seedship-action": "1" },
    body: JSON.stringify(body),
  });
  const v = await r.json().catch(() => ({ error: r.statusText }));
  lastResult = { id: resultId, text: r.ok ? "done: " + (v.state ? v.state + " (" + v.reason + ")" : "acknowledged") : "refused: " + v.error };
  const out = document.getElementById(resultId);
  if (out) out.textContent = lastResult.text;
  draw();
}

function result(id) { return el("p", { id, class: "result" }, lastResult.id === id ? lastResult.text : ""); }

function seedActions(job) {
  const reason = el("input", { id: "action-reason", placeholder: "why (kept in the seed's history)", size: "40" });
  const station = el("input", { id: "action-station", placeholder: "to station (re-queue)", size: "16" });
  const button = (label, action) => {
    const b = el("button", { "data-action": action }, label);
    b.addEventListener("click", () => act("/api/seeds/" + encodeURIComponent(job) + "/actions",
      { action, reason: reason.value, station: action === "requeue" ? station.value : "" }, "action-result"));
    return b;
  };
  return el("section", { id: "actions" }, el("h2", {}, "Operator actions"),
    el("p", {}, reason, " ", station, " ", button("Re-queue disk prep", "requeue"), " ", button("Retry failed step", "retry"), " ", button("Cancel seed", "cancel"),
      " ", button("Ship lost files on new disks", "reship")),
    result("action-result"));
}

function ackCell(n) {
  if (!n.notification) return "";
  const b = el("button", { "data-ack": String(n.notification) }, "Acknowledge");
  b.addEventListener("click", () => act("/api/notifications/" + n.notification + "/ack",
    { reason: document.getElementById("ack-reason").value }, "ack-result"));
  return b;
}

function progressCell(p) {
  const pct = p.total ? Math.round((100 * p.done) / p.total) : 100;
  const fill = el("i", {});
  fill.style.width = pct + "%"; // through the CSSOM: the CSP allows no style attribute
  return el("span", {}, el("span", { class: "bar" }, fill),
    " " + bytes(p.done) + " of " + bytes(p.total) + " (" + pct + "%) " + (p.rate ? bytes(p.rate) + "/s" : "-") + " ETA " + p.eta);
}

async function fleet() {
  const o = await api("/api/overview");
  const active = o.by_state.filter((s) => s.seeds > 0 || !["failed", "cancelled"].includes(s.state));
  return [
    el("section", { id: "pipeline" }, el("h2", {}, "Seeds by stage"),
      el("div", { class: "pipeline" }, active.map((s) => el("div", {
        class: "stage" + (s.seeds && s.state === "failed" ? " bad" : s.seeds ? " busy" : ""), "data-state": s.state,
      }, el("b", {}, s.seeds), s.state.replaceAll("_", " "))))),
    el("section", { id: "needs" }, el("h2", {}, "Waiting on a person"),
      table(["Job", "What", "Since", ""], o.needs_person.map((n) => [link(n.job), n.kind.replaceAll("_", " ") + ": " + n.why, n.since, ackCell(n)]), "nothing waits on a person"),
      el("p", {}, el("input", { id: "ack-reason", placeholder: "why you acknowledge (kept with it)", size: "40" })), result("ack-result")),
    el("section", { id: "failures" }, el("h2", {}, "Failures"),
      table(["Job", "Why", "When"], o.failures.map((f) => [link(f.job), f.why, f.at]), "no failed seed")),
    el("section", { id: "deadlines" }, el("h2", {}, "Deadlines, soonest first"),
      table(["Job", "Clock", "Due", "What to do"], o.deadlines.map((d) => [link(d.job), d.deadline, d.due, d.what]), "no clock running")),
    el("section", { id: "seeds" }, el("h2", {}, "All seeds (" + o.seeds.length + "), " + bytes(o.bytes_in_transit) + " in transit"),
      table(["Job", "Server", "State", "Reason", "Size", "Updated"], o.seeds.map((s) => [link(s.job), s.server, s.state, s.reason, bytes(s.bytes), s.updated]))),
  ];
}

async function seed(job) {
  const d = await api("/api/seeds/" + encodeURIComponent(job));
  const s = d.seed;
  return [
    el("section", { id: "seed" }, el("h2", {}, "Seed " + s.job + " (" + s.seed_id + ")"),
      table(["Server", "State", "Reason", "Ships on", "Size"], [[s.server, el("b", { id: "seed-state" }, s.state), s.reason, s.kind, bytes(s.bytes) + ", " + s.files + " files"]]),
      s.round_of ? el("p", { id: "round-of" }, "A new offline round for the files that the import of ", link(s.round_of), " lost; merged into it once imported.") : "",
      d.rounds.length ? table(["Offline round", "State", "Files", "Reason"], d.rounds.map((r) => [link(r.job), el("b", { "data-round": r.job }, r.state), r.files + " (" + bytes(r.bytes) + ")", r.reason])) : ""),
    el("section", { id: "disks" }, el("h2", {}, "Disks"),
      table(["#", "Serial", "Station", "Status", "Written", "Manifest MD5"], d.disks.map((x) => [x.position, x.serial, x.station, x.status, bytes(x.written), x.manifest_md5]), "no disk reported yet"),
      d.progress.length ? table(["Disk", "Phase", "Progress, rate, ETA", "Reported"], d.progress.map((p) => [p.position + "/" + p.set_size + " " + p.serial, p.phase, progressCell(p), p.reported])) : ""),
    el("section", { id: "azure" }, el("h2", {}, "Azure import job"),
      d.azure ? table(["Stage", "Status", "Disks"], [[d.azure.stage || d.azure.phase, d.azure.stage_status, d.azure.drives.map((x) => x.serial + ": " + (x.copy_status || x.state)).join(", ")]]) : el("p", { class: "empty" }, "no job yet")),
    el("section", { id: "verification" }, el("h2", {}, "Verification and vault"),
      table(["Verified", "Missing", "Corrupted", "Repairs", "Checked"], [[d.verification.verified, d.verification.missing, d.verification.corrupted, d.verification.repairs, d.verification.checked || "-"]]),
      table(["Recovery point", "Kind", "Made"], d.recovery_points.map((p) => [p.snapshot, p.kind, p.at]), "no recovery point yet")),
    seedActions(s.job),
    el("section", { id: "timeline" }, el("h2", {}, "Timeline"),
      table(["When", "Who", "What", "State", "Why"], d.history.slice().reverse().map((h) => [h.at, h.actor, h.event, h.to, h.reason]))),
  ];
}

async function stations() {
  const a = await api("/api/agents");
  return [
    el("section", { id: "agents" }, el("h2", {}, "Stations and servers"),
      table(["Role", "Name", "Activity", "Work", "Site", "Host", "Virtualization", "Last heartbeat"],
        a.agents.map((x) => [x.role, x.name, el("b", { "data-activity": x.activity }, x.activity), x.work ? x.work.job : "-", x.site || "-", x.host, x.virtualization || "?", x.last_heartbeat]), "no agent registered")),
    a.agents.filter((x) => x.work && x.work.disks.length).map((x) => el("section", { class: "station-disks" }, el("h2", {}, x.name + ": " + x.work.job),
      table(["Disk", "Phase", "Progress, rate, ETA"], x.work.disks.map((p) => [p.position + "/" + p.set_size + " " + p.serial, p.phase, progressCell(p)])))),
  ];
}

function barChart(id, title, rows, fmt) {
  const w = 640, bh = 18, h = rows.length * (bh + 6) + 10, max = Math.max(1, ...rows.map((r) => r[1]));
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("width", w); svg.setAttribute("height", h); svg.setAttribute("id", id);
  rows.forEach(([label, v], i) => {
    const y = 5 + i * (bh + 6);
    const t = document.createElementNS(svg.namespaceURI, "text");
    t.setAttribute("x", 0); t.setAttribute("y", y + 13); t.textContent = label; svg.append(t);
    const r = document.createElementNS(svg.namespaceURI, "rect");
    r.setAttribute("x", 170); r.setAttribute("y", y); r.setAttribute("height", bh); r.setAttribute("width", Math.max(1, (380 * v) / max)); r.setAttribute("fill", "#3d7fd9"); svg.append(r);
    const n = document.createElementNS(svg.namespaceURI, "text");
    n.setAttribute("x", 175 + (380 * v) / max); n.setAttribute("y", y + 13); n.textContent = fmt(v); svg.append(n);
  });
  return el("section", {}, el("h2", {}, title), rows.length ? svg : el("p", { class: "empty" }, "nothing yet"));
}

function lineChart(series) {
  const w = 640, h = 160;
  const pts = series.flatMap((s) => s.points);
  if (!pts.length) return el("section", {}, el("h2", {}, "Throughput per station"), el("p", { class: "empty" }, "no samples yet (one every 10 s)"));
  const t0 = Math.min(...pts.map((p) => p[0])), t1 = Math.max(t0 + 1, ...pts.map((p) => p[0])), max = Math.max(1, ...pts.map((p) => p[1]));
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("width", w); svg.setAttribute("height", h + 20); svg.setAttribute("id", "throughput");
  const colors = ["#3d7fd9", "#d9823d", "#3da65a", "#a63d9b"];
  series.forEach((s, i) => {
    const p = document.createElementNS(svg.namespaceURI, "polyline");
    p.setAttribute("fill", "none"); p.setAttribute("stroke", colors[i % colors.length]); p.setAttribute("stroke-width", "2");
    p.setAttribute("points", s.points.map(([t, v]) => ((w * (t - t0)) / (t1 - t0)).toFixed(1) + "," + (h - (h * v) / max).toFixed(1)).join(" "));
    svg.append(p);
    const l = document.createElementNS(svg.namespaceURI, "text");
    l.setAttribute("x", 5 + 120 * i); l.setAttribute("y", h + 15); l.setAttribute("fill", colors[i % colors.length]); l.textContent = s.station; svg.append(l);
  });
  return el("section", {}, el("h2", {}, "Throughput per station (peak " + bytes(max) + "/s)"), svg);
}

async function charts() {
  const c = await api("/api/charts");
  const o = await api("/api/overview");
  return [
    barChart("by-stage", "Seeds by stage", o.by_state.filter((s) => s.seeds).map((s) => [s.state, s.seeds]), (v) => v),
    barChart("stage-time", "Mean time spent per stage", c.stages.map((s) => [s.stage, s.mean_seconds]), (v) => v < 120 ? v.toFixed(1) + " s" : (v / 3600).toFixed(1) + " h"),
    lineChart(c.throughput),
    el("section", {}, el("h2", {}, "In transit"), el("p", { id: "in-transit" }, bytes(c.bytes_in_transit) + " on disks between the stations and the datacenter")),
  ];
}

let drawing = Promise.resolve();
function draw() {
  drawing = drawing.then(async () => {
    const route = location.hash.replace(/^#\/?/, "");
    try {
      const parts = route.startsWith("seed/") ? await seed(decodeURIComponent(route.slice(5)))
        : route === "stations" ? await stations() : route === "charts" ? await charts() : await fleet();
      // What a person typed survives a live redraw.
      const typed = Object.fromEntries([...view.querySelectorAll("input[id]")].map((i) => [i.id, i.value]));
      view.replaceChildren(...parts.flat());
      for (const [id, v] of Object.entries(typed)) { const i = document.getElementById(id); if (i) i.value = v; }
      document.body.dataset.updated = String(Date.now());
    } catch (e) {
      view.replaceChildren(el("section", { class: "error" }, el("h2", {}, "Cannot show this"), String(e.message || e)));
    }
  });
  return drawing;
}

window.addEventListener("hashchange", draw);
const events = new EventSource("/api/events");
events.addEventListener("change", () => {
  live.textContent = "live, updated " + new Date().toLocaleTimeString();
  draw();
});
events.onerror = () => { live.textContent = "reconnecting…"; };
draw();
