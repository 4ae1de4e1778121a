// Markdown to safe HTML: marked parses, DOMPurify sanitizes (model output is untrusted), highlight.js colours
// code blocks once they are in the page.

import { Marked } from '../vendor/marked.esm.js';
import DOMPurify from '../vendor/purify.es.mjs';
import hljs from '../vendor/highlight.min.js';

const marked = new Marked({ gfm: true, breaks: false });

DOMPurify.addHook('afterSanitizeAttributes', (node) => {
  if (node.tagName === 'A') {
    node.setAttribute('target', '_blank');
    node.setAttribute('rel', 'noopener noreferrer');
  }
});

export function toHtml(text) {
  return DOMPurify.sanitize(marked.parse(text || ''));
}

/** Render `text` into `el`, highlight its code blocks and give each a copy button. */
export function renderInto(el, text) {
  el.innerHTML = toHtml(text);
  for (const code of el.querySelectorAll('pre > code')) {
    hljs.highlightElement(code);
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'copy-code';
    button.textContent = 'copy';
    button.addEventListener('click', () => copy(code.textContent, button));
    code.parentElement.append(button);
  }
}

export async function copy(text, button) {
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch {
    ok = copyByCommand(text); // navigator.clipboard needs a secure context, which http://<lan-ip> is not
  }
  if (button) flash(button, ok ? 'copied' : 'copy failed');
}

function copyByCommand(text) {
  const area = Object.assign(document.createElement('textarea'), { value: text });
  area.style.position = 'fixed';
  area.style.opacity = '0';
  document.body.append(area);
  area.select();
  try {
    return document.execCommand('copy');
  } catch {
    return false;
  } finally {
    area.remove();
  }
}

function flash(button, text) {
  const old = button.textContent;
  button.textContent = text;
  setTimeout(() => (button.textContent = old), 1200);
}
