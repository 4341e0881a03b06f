import sanitizeHtml from 'sanitize-html';

// What a frontend may render of a received mail's HTML: formatting, links and inline (cid:)
// images. No script, style, event handler, form, iframe or object survives, and nothing loads
// from elsewhere when it is shown: a remote image keeps its alt text, not its src (tracking
// pixels stay dark).
// allowedSchemes only judges URLs that have a scheme: a relative one ("/v1/agents/me",
// "logo.png") would pass and resolve against wherever the HTML is shown. Only these survive.
const LINK = /^(?:https?:\/\/[^/\s]|mailto:)/i;
const INLINE_IMAGE = /^cid:/i;

const keepIf = (attribs: sanitizeHtml.Attributes, name: string, allowed: RegExp) => {
  const { [name]: value, ...rest } = attribs;
  return value !== undefined && allowed.test(value.trim()) ? { ...rest, [name]: value.trim() } : rest;
};

const OPTIONS: sanitizeHtml.IOptions = {
  allowedTags: [...sanitizeHtml.defaults.allowedTags, 'img', 'font', 'center'],
  allowedAttributes: {
    a: ['href', 'name', 'title', 'rel', 'target'],
    img: ['src', 'alt', 'title', 'width', 'height'],
    td: ['colspan', 'rowspan', 'align', 'valign'],
    th: ['colspan', 'rowspan', 'align', 'valign'],
    table: ['width', 'border', 'cellpadding', 'cellspacing'],
    '*': ['dir', 'lang'],
  },
  allowedSchemes: ['http', 'https', 'mailto'],
  allowedSchemesByTag: { img: ['cid'] },
  allowProtocolRelative: false,
  disallowedTagsMode: 'discard',
  transformTags: {
    a: (tagName, attribs) => ({
      tagName,
      attribs: { ...keepIf(attribs, 'href', LINK), rel: 'noopener noreferrer nofollow', target: '_blank' },
    }),
    img: (tagName, attribs) => ({ tagName, attribs: keepIf(attribs, 'src', INLINE_IMAGE) }),
  },
};

export function sanitiseMailHtml(html: string): string {
  return sanitizeHtml(html, OPTIONS);
}
