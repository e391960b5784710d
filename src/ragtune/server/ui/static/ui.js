// ragtune web UI: the chat's streamed answers. No inline scripts anywhere (the CSP forbids them); text from the
// server is inserted as text, except the answer fragment, which the server rendered with every value escaped.
"use strict";

function parseEvents(buffer, onEvent) {
  // Server-sent events from a fetch body: returns what is left after the last complete event.
  let cut;
  while ((cut = buffer.indexOf("\n\n")) >= 0) {
    const block = buffer.slice(0, cut);
    buffer = buffer.slice(cut + 2);
    let event = "message", data = "";
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data += line.slice(5).trim();
    }
    if (data) onEvent(event, JSON.parse(data));
  }
  return buffer;
}

async function ask(form) {
  const conversation = document.getElementById("conversation");
  const question = form.querySelector("#question");
  const button = form.querySelector("button[type=submit]");
  const article = document.createElement("article");
  article.className = "answer";
  article.setAttribute("aria-busy", "true");
  const heading = document.createElement("h2");
  heading.className = "question";
  heading.textContent = question.value;
  const stream = document.createElement("p");
  stream.className = "streaming";
  stream.textContent = "…";
  article.append(heading, stream);
  conversation.append(article);
  button.disabled = true;
  let first = true;
  const show = (event, data) => {
    if (event === "token") {
      if (first) { stream.textContent = ""; first = false; }
      stream.append(document.createTextNode(data.text));
    } else if (event === "html") {
      article.innerHTML = data.html;  // rendered and escaped by the server
      if (window.htmx) window.htmx.process(article);
    } else if (event === "error") {
      const p = document.createElement("p");
      p.className = "error";
      p.setAttribute("role", "alert");
      p.textContent = data.message;
      stream.replaceWith(p);
    }
  };
  try {
    const response = await fetch(form.action, {
      method: "POST", body: new URLSearchParams(new FormData(form)), credentials: "same-origin",
      headers: {"Accept": "text/event-stream"},
    });
    if (!response.ok || !response.body) {
      show("error", {message: response.status === 303 || response.redirected
        ? "Your session ended: log in again." : "The answer failed (HTTP " + response.status + ")."});
    } else {
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buffer = parseEvents(buffer + decoder.decode(value, {stream: true}), show);
      }
    }
  } catch (err) {
    show("error", {message: "The server could not be reached: " + err});
  } finally {
    article.removeAttribute("aria-busy");
    article.dataset.done = "1";
    button.disabled = false;
    question.value = "";
    question.focus();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("ask-form");
  if (form) {
    form.addEventListener("submit", (e) => { e.preventDefault(); ask(form); });
    form.querySelector("#question").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); form.requestSubmit(); }
    });
  }
  const mark = document.getElementById("hl");
  if (mark) { mark.scrollIntoView({block: "center"}); mark.focus({preventScroll: true}); }
  // Buttons that confirm before submitting (data-confirm), without inline handlers.
  document.body.addEventListener("click", (e) => {
    const b = e.target.closest("[data-confirm]");
    if (b && !window.confirm(b.dataset.confirm)) e.preventDefault();
  });
});
