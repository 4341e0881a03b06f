import t from 'tap';
import { up as asciiMailDomains } from '../migrations/0052_ascii_mail_domains.ts';
import { agentWithToken, buildTestApp, makeDepartment } from './helpers/app.ts';
import { rawMail } from './helpers/mail.ts';

t.setTimeout(300_000);

// Mail from and to internationalised domains (IDNA), through POST /v1/inbound/email on a real
// database. Mail parsers hand such a domain back in Unicode even when the mail spelled it in
// ASCII; the API's email format (RFC 5321) refuses that form. Senders and recipients are kept and
// compared in the ASCII form, so a contact made from mail can be written back as it was read,
// and mail to a support address on such a domain reaches its department.

t.test('internationalised mail domains', async (t) => {
  const ctx = await buildTestApp(t, { MAIL_FROM: 'desk@acme.test' });
  const { db } = ctx;
  const support = await makeDepartment(db, 'Support');
  const admin = await agentWithToken(ctx, { role: 'admin' });
  // Support addresses come through the API's email format: ASCII (café.example).
  const addressed = await ctx.request({
    method: 'PUT',
    url: `/v1/departments/${support}/mail-identity`,
    token: admin.token,
    payload: { addresses: [{ address: 'help@xn--caf-dma.example', reply_from: true }] },
  });
  t.equal(addressed.statusCode, 200, addressed.body);
  const created = await ctx.request({
    method: 'POST',
    url: '/v1/mailboxes',
    token: admin.token,
    payload: { name: 'Inbound', department_id: support, kind: 'inbound' },
  });
  t.equal(created.statusCode, 201, created.body);
  const secret = created.json().inbound_secret as string;
  const post = (raw: string) =>
    ctx.request({
      method: 'POST',
      url: '/v1/inbound/email',
      headers: { 'content-type': 'message/rfc822', authorization: `Bearer ${secret}` },
      payload: Buffer.from(raw, 'utf8'),
    });
  const ticket = async (id: string) =>
    (await ctx.request({ method: 'GET', url: `/v1/tickets/${id}`, token: admin.token })).json();

  let contactId = '';
  await t.test('an ASCII sender on an internationalised domain keeps its ASCII form', async (t) => {
    const res = await post(rawMail({ from: 'Eva <eva@xn--bcher-kva.example>', to: 'help@café.example' }));
    t.equal(res.statusCode, 202, res.body);
    t.equal(res.json().outcome, 'created', res.body);
    const opened = await ticket(res.json().ticket_id);
    t.equal(opened.department_id, support, 'routed by the support address, written in Unicode in the mail');
    t.equal(opened.support_address, 'help@xn--caf-dma.example');
    t.equal(opened.contact.email, 'eva@xn--bcher-kva.example');
    contactId = opened.contact.id;
    const messages = await ctx.request({
      method: 'GET',
      url: `/v1/tickets/${opened.id}/messages`,
      token: admin.token,
    });
    t.equal(messages.json().data[0].mail_address, 'eva@xn--bcher-kva.example');

    // What the API answered, it takes back.
    const contact = await ctx.request({
      method: 'GET',
      url: `/v1/contacts/${contactId}`,
      token: admin.token,
    });
    t.equal(contact.statusCode, 200, contact.body);
    t.same(contact.json().emails, ['eva@xn--bcher-kva.example']);
    const patched = await ctx.request({
      method: 'PATCH',
      url: `/v1/contacts/${contactId}`,
      token: admin.token,
      payload: { emails: contact.json().emails },
    });
    t.equal(patched.statusCode, 200, patched.body);
  });

  await t.test('the same sender written in Unicode and upper case is the same contact', async (t) => {
    const res = await post(rawMail({ from: 'Eva <EVA@Bücher.Example>', to: 'help@xn--caf-dma.example' }));
    t.equal(res.statusCode, 202, res.body);
    const opened = await ticket(res.json().ticket_id);
    t.equal(opened.contact.id, contactId);
    t.equal(opened.department_id, support);
  });

  await t.test('migration 0052 converts the addresses stored before', async (t) => {
    // Stored as mail in stored them before: the domain in Unicode.
    const [old, taken] = await db
      .insertInto('contacts')
      .values([{ name: 'Old' }, { name: 'Taken' }])
      .returning('id')
      .execute();
    await db
      .insertInto('contact_emails')
      .values([
        { contact_id: old!.id, email: 'jan@müller.example', position: 0 },
        // Its ASCII form belongs to another contact already: it stays as it is.
        { contact_id: taken!.id, email: 'ana@xn--caf-dma.example', position: 0 },
        { contact_id: old!.id, email: 'ana@café.example', position: 1 },
      ])
      .execute();
    const opened = (
      await post(rawMail({ from: 'Jan <jan@example.org>', to: 'help@xn--caf-dma.example' }))
    ).json();
    await db
      .updateTable('ticket_messages')
      .set({ mail_address: 'jan@müller.example' })
      .where('id', '=', opened.message_id)
      .execute();

    await asciiMailDomains(db);
    const emails = await db
      .selectFrom('contact_emails')
      .select(['contact_id', 'email'])
      .where('contact_id', 'in', [old!.id, taken!.id])
      .orderBy('contact_id')
      .orderBy('position')
      .execute();
    t.same(
      emails.filter((e) => e.contact_id === old!.id).map((e) => e.email),
      ['jan@xn--mller-kva.example', 'ana@café.example'],
    );
    t.same(
      emails.filter((e) => e.contact_id === taken!.id).map((e) => e.email),
      ['ana@xn--caf-dma.example'],
    );
    const message = await db
      .selectFrom('ticket_messages')
      .select('mail_address')
      .where('id', '=', opened.message_id)
      .executeTakeFirstOrThrow();
    t.equal(message.mail_address, 'jan@xn--mller-kva.example');
    // Run again, it changes nothing more.
    await asciiMailDomains(db);
    const again = await db
      .selectFrom('contact_emails')
      .select('email')
      .where('contact_id', '=', old!.id)
      .orderBy('position')
      .execute();
    t.same(
      again.map((e) => e.email),
      ['jan@xn--mller-kva.example', 'ana@café.example'],
    );
  });
});
