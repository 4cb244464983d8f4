// The message template form's live preview (campaigns/admin_templates.py): on every change,
// after a pause in typing, the unsaved template is posted to the admin's preview endpoint and
// the box shows what the chosen rule's customer would receive. A static file because the
// Content-Security-Policy allows no inline script.
"use strict";

// The admin puts form media in the <head>: start once the form exists.
document.addEventListener("DOMContentLoaded", function () {
  const box = document.getElementById("template-preview");
  if (!box) {
    return;
  }
  const form = box.closest("form");
  const NAMES = ["channel", "subject", "body", "html_body", "preview_rule", "preview_customer"];
  // 300 ms: a preview per pause in typing, not per key stroke.
  const DEBOUNCE_MS = 300;
  let timer = null;
  let latest = 0;

  function field(name) {
    return form.querySelector('[name="' + name + '"]');
  }

  function part(selector) {
    return box.querySelector(selector);
  }

  function show(element, visible) {
    element.hidden = !visible;
    element.style.display = visible ? "" : "none";
  }

  // Only email has a subject line and an HTML part: their rows are hidden for other channels.
  function toggleEmailFields() {
    const email = field("channel").value === "email";
    ["subject", "html_body"].forEach(function (name) {
      const row = form.querySelector(".field-" + name);
      if (row) {
        show(row, email);
      }
    });
  }

  function render(result) {
    const failed = !result.ok;
    part(".preview-error").textContent = failed ? result.error : "";
    show(part(".preview-error"), failed);
    if (failed) {
      return;
    }
    part(".preview-meta").textContent = [
      "For " + result.customer + ", offer: " + result.offer + ".",
    ].concat(result.notes).join(" ");
    show(part(".preview-subject"), result.subject !== null);
    part(".preview-subject span").textContent = result.subject || "";
    part(".preview-text").textContent = result.text;
    const sms = result.sms;
    part(".preview-sms").textContent = sms ? sms.describe : "";
    show(part(".preview-sms"), Boolean(sms));
    part(".preview-sms-warning").textContent = sms ? sms.warning : "";
    show(part(".preview-sms-warning"), Boolean(sms && sms.warning));
    part(".preview-html").srcdoc = result.html;
    show(part(".preview-html"), Boolean(result.html));
  }

  async function refresh() {
    const mine = ++latest;
    const data = new FormData();
    NAMES.forEach(function (name) {
      const element = field(name);
      if (element) {
        data.append(name, element.value);
      }
    });
    const token = field("csrfmiddlewaretoken").value;
    box.setAttribute("aria-busy", "true");
    let result;
    try {
      const response = await fetch(box.dataset.url, {
        method: "POST",
        body: data,
        credentials: "same-origin",
        headers: { "X-CSRFToken": token, Accept: "application/json" },
      });
      result = await response.json();
    } catch (error) {
      result = { ok: false, error: "The preview could not be loaded (" + error.message + ")." };
    }
    if (mine === latest) {
      box.setAttribute("aria-busy", "false");
      box.dataset.updates = String(mine);
      render(result);
    }
  }

  function schedule() {
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, DEBOUNCE_MS);
  }

  NAMES.forEach(function (name) {
    const element = field(name);
    if (element) {
      element.addEventListener("input", schedule);
      element.addEventListener("change", schedule);
    }
  });
  field("channel").addEventListener("change", toggleEmailFields);
  toggleEmailFields();
  refresh();
});
