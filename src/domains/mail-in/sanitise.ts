import sanitizeHtml from 'sanitize-html';

// What a frontend may render of a received mail's HTML: formatting, links and inline (cid:)
// images. No script, style, event handler, form, iframe or object survives, and nothing loads
// from elsewhere when it is shown: a remote image keeps its alt text, not its src (tracking
// pixels stay dark).
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
      attribs: { ...attribs, rel: 'noopener noreferrer nofollow', target: '_blank' },
    }),
  },
};

export function sanitiseMailHtml(html: string): string {
  return sanitizeHtml(html, OPTIONS);
}
