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
  const NAMES = [
    "channel",
    "subject",
    "body",
    "html_body",
    "deep_link",
    "image_url",
    "preview_rule",
    "preview_customer",
  ];
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

  // Only email has an HTML part; email has a subject, push and in-app a title (the same
  // field, relabelled); only push and in-app have a deep link and an image.
  function toggleEmailFields() {
    const channel = field("channel").value;
    const email = channel === "email";
    const pushLike = channel === "push" || channel === "in_app";
    const visible = { subject: email || pushLike, html_body: email };
    visible.deep_link = pushLike;
    visible.image_url = pushLike;
    Object.keys(visible).forEach(function (name) {
      const row = form.querySelector(".field-" + name);
      if (row) {
        show(row, visible[name]);
      }
    });
    const label = form.querySelector('label[for="id_subject"]');
    if (label) {
      label.textContent = pushLike ? "Title:" : "Subject:";
    }
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
    part(".preview-subject-label").textContent =
      result.channel === "email" ? "Subject:" : "Title:";
    part(".preview-link span").textContent = result.deep_link || "";
    show(part(".preview-link"), Boolean(result.deep_link));
    const push = result.push;
    part(".preview-push").textContent = push ? push.describe : "";
    show(part(".preview-push"), Boolean(push));
    const warnings = push ? push.warnings.join(" ") : "";
    part(".preview-push-warning").textContent = warnings;
    show(part(".preview-push-warning"), Boolean(warnings));
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
