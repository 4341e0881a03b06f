import sanitizeHtml from 'sanitize-html';

// Outgoing HTML (signatures, rendered templates, agents' HTML replies) passes this allowlist: the
// formatting mail clients show, links and https images, inline styles limited to harmless
// properties; no script, no event handler, no form, no iframe, no url() in styles.

const SAFE_STYLE_VALUE = [/^(?!.*(url|expression|javascript)\s*[(:]).{0,200}$/i];
const STYLE_PROPERTIES = [
  'color',
  'background-color',
  'font-family',
  'font-size',
  'font-weight',
  'font-style',
  'text-align',
  'text-decoration',
  'line-height',
  'margin',
  'margin-top',
  'margin-bottom',
  'margin-left',
  'margin-right',
  'padding',
  'padding-top',
  'padding-bottom',
  'padding-left',
  'padding-right',
  'border',
  'border-top',
  'border-bottom',
  'border-collapse',
  'width',
  'max-width',
  'vertical-align',
];

// allowedSchemes only judges URLs that have a scheme: a relative one ("/v1/agents/me", "x")
// would pass and resolve against the reader's page. Only absolute ones survive.
const LINK = /^(?:https?:\/\/[^/\s]|mailto:|tel:)/i;
const IMAGE = /^https:\/\/[^/\s]/i;

const keepIf = (attribs: sanitizeHtml.Attributes, name: string, allowed: RegExp) => {
  const { [name]: value, ...rest } = attribs;
  return value !== undefined && allowed.test(value.trim()) ? { ...rest, [name]: value.trim() } : rest;
};

const OPTIONS: sanitizeHtml.IOptions = {
  allowedTags: [...sanitizeHtml.defaults.allowedTags.filter((tag) => tag !== 'style'), 'img', 'span', 'font'],
  allowedAttributes: {
    '*': ['style', 'align', 'dir', 'title'],
    a: ['href', 'name', 'target', 'rel'],
    img: ['src', 'alt', 'width', 'height'],
    td: ['colspan', 'rowspan', 'width', 'valign'],
    th: ['colspan', 'rowspan', 'width', 'valign'],
    table: ['width', 'cellpadding', 'cellspacing', 'border'],
    font: ['color', 'face', 'size'],
  },
  allowedSchemes: ['https', 'http', 'mailto', 'tel'],
  allowedSchemesByTag: { img: ['https'] },
  allowProtocolRelative: false,
  allowedStyles: { '*': Object.fromEntries(STYLE_PROPERTIES.map((p) => [p, SAFE_STYLE_VALUE])) },
  disallowedTagsMode: 'discard',
  transformTags: {
    a: (tagName, attribs) => ({ tagName, attribs: keepIf(attribs, 'href', LINK) }),
    img: (tagName, attribs) => ({ tagName, attribs: keepIf(attribs, 'src', IMAGE) }),
  },
};

/** HTML a mail reader may show as it is. */
export function sanitiseOutgoingHtml(html: string): string {
  return sanitizeHtml(html, OPTIONS);
}

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

export const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);

/** Plain text as HTML: escaped, line breaks kept. */
export function textToHtml(text: string): string {
  return escapeHtml(text).replace(/\r?\n/g, '<br>\n');
}
