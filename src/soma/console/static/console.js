// SomaAgentHub console: live project pages over server-sent events. Pages work without this
// script (they are server-rendered); it only keeps an open project page up to date.
"use strict";

(function () {
  const STATUS_CLASSES = /\bstatus-[a-z_]+\b/g;

  function statusBadge(status) {
    const span = document.createElement("span");
    span.className = "status status-" + status;
    span.textContent = status.replace(/_/g, " ");
    return span;
  }

  function setStatusClass(element, status) {
    const current = element.getAttribute("class") || "";
    element.setAttribute("class", current.replace(STATUS_CLASSES, "").trim() + " status-" + status);
  }

  function formatTokens(n) {
    return (n || 0).toLocaleString("en-US");
  }

  function applyProject(project) {
    const status = document.getElementById("project-status");
    if (status) status.replaceChildren(statusBadge(project.status));
    const tokens = document.getElementById("project-tokens");
    if (tokens) tokens.textContent = formatTokens(project.input_tokens) + " / " + formatTokens(project.output_tokens);
    for (const run of project.runs || []) {
      const label = run.status.replace(/_/g, " ");
      for (const node of document.querySelectorAll('svg.dag .node[data-node="' + CSS.escape(run.node_id) + '"]')) {
        setStatusClass(node, run.status);
        node.setAttribute("aria-label", run.node_id + " (" + (run.capsule || "") + "): " + label);
        const text = node.querySelector(".node-status");
        if (text) text.textContent = label;
      }
      const row = document.querySelector('#runs tr[data-node="' + CSS.escape(run.node_id) + '"]');
      if (row) {
        row.querySelector(".run-status").replaceChildren(statusBadge(run.status));
        row.querySelector(".run-attempts").textContent = run.attempts;
        if (run.persona) row.querySelector(".run-persona").textContent = run.persona;
        row.querySelector(".run-tokens").textContent = formatTokens(run.input_tokens) + " / " + formatTokens(run.output_tokens);
      }
    }
  }

  function appendEvent(list, event) {
    const item = document.createElement("li");
    const time = document.createElement("time");
    time.textContent = new Date(event.created_at).toISOString().replace("T", " ").slice(0, 19) + " UTC";
    const kind = document.createElement("span");
    kind.className = "kind";
    kind.textContent = event.kind;
    item.append(time, " ", kind);
    if (event.node_id) {
      const node = document.createElement("span");
      node.className = "mono";
      node.textContent = event.node_id;
      item.append(" ", node);
    }
    item.append(" " + event.message);
    list.append(item);
    list.scrollTop = list.scrollHeight;
  }

  function watchProject(live) {
    const id = live.dataset.project;
    const list = document.getElementById("events");
    let refreshing = null;
    const refresh = () => {
      if (refreshing) return refreshing;
      refreshing = fetch("/api/v1/projects/" + encodeURIComponent(id), { credentials: "same-origin" })
        .then((response) => (response.ok ? response.json() : null))
        .then((project) => { if (project) applyProject(project); })
        .finally(() => { refreshing = null; });
      return refreshing;
    };
    const url = "/api/v1/projects/" + encodeURIComponent(id) + "/events/stream?named_events=false&after=" + live.dataset.after;
    const source = new EventSource(url, { withCredentials: true });
    source.onmessage = (message) => {
      const event = JSON.parse(message.data);
      live.dataset.after = String(event.id);
      if (list) appendEvent(list, event);
      refresh();
    };
    source.addEventListener("end", () => {
      source.close();
      live.dataset.terminal = "true";
      const note = document.getElementById("live-note");
      if (note) note.textContent = "";
      const cancel = document.getElementById("cancel-form");
      if (cancel) cancel.remove();
      refresh().then(() => document.body.setAttribute("data-project-finished", "true"));
    });
    // EventSource reconnects by itself (sending Last-Event-ID); nothing to do on error.
  }

  document.addEventListener("submit", (event) => {
    const form = event.target;
    const question = form instanceof HTMLFormElement ? form.dataset.confirm : undefined;
    if (question && !window.confirm(question)) event.preventDefault();
  });

  document.addEventListener("DOMContentLoaded", () => {
    const live = document.getElementById("live");
    if (live && live.dataset.terminal !== "true" && "EventSource" in window) watchProject(live);
  });
})();
