import t from 'tap';
import { up as asciiMailDomains } from '../migrations/0052_ascii_mail_domains.ts';
import { agentWithToken, buildTestApp, makeDepartment } from './helpers/app.ts';
import { inboundMailbox, rawMail } from './helpers/mail.ts';

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
  const post = await inboundMailbox(t, ctx, admin.token, support);
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

  await t.test(
    "a support address is refused when another department's IMAP login names it in Unicode",
    async (t) => {
      const other = await makeDepartment(db, 'Other');
      const mailbox = await ctx.request({
        method: 'POST',
        url: '/v1/mailboxes',
        token: admin.token,
        payload: {
          name: 'Postfach',
          department_id: other,
          kind: 'imap',
          imap: {
            host: 'imap.bücher.example',
            port: 993,
            username: ' Postfach@Bücher.Example',
            password: 'secret',
          },
        },
      });
      t.equal(mailbox.statusCode, 201, mailbox.body);
      const res = await ctx.request({
        method: 'PUT',
        url: `/v1/departments/${support}/mail-identity`,
        token: admin.token,
        payload: {
          addresses: [
            { address: 'help@xn--caf-dma.example', reply_from: true },
            { address: 'postfach@xn--bcher-kva.example' },
          ],
        },
      });
      t.equal(res.statusCode, 409, res.body);
      t.equal(res.json().code, 'address_of_mailbox');
    },
  );

  await t.test('migration 0052 converts the addresses stored before', async (t) => {
    // Stored as mail in stored them before: the domain in Unicode.
    const [old, taken, nfc, nfd] = await db
      .insertInto('contacts')
      .values([{ name: 'Old' }, { name: 'Taken' }, { name: 'NFC' }, { name: 'NFD' }])
      .returning('id')
      .execute();
    await db
      .insertInto('contact_emails')
      .values([
        { contact_id: old!.id, email: 'jan@müller.example', position: 0 },
        // Its ASCII form belongs to another contact already: it stays as it is.
        { contact_id: taken!.id, email: 'ana@xn--caf-dma.example', position: 0 },
        { contact_id: old!.id, email: 'ana@café.example', position: 1 },
        // Two spellings of one domain (composed and decomposed é): one of them converts.
        { contact_id: nfc!.id, email: 'bo@caf\u00e9.example', position: 0 },
        { contact_id: nfd!.id, email: 'bo@cafe\u0301.example', position: 0 },
      ])
      .execute();
    const mail = async (sender: string) => {
      const opened = (
        await post(rawMail({ from: `Someone <someone@example.org>`, to: 'help@xn--caf-dma.example' }))
      ).json();
      await db
        .updateTable('ticket_messages')
        .set({ mail_address: sender })
        .where('id', '=', opened.message_id)
        .execute();
      return opened.message_id as string;
    };
    const fromJan = await mail('jan@müller.example');
    const fromAna = await mail('ana@café.example');
    const addressOf = async (id: string) =>
      (
        await db
          .selectFrom('ticket_messages')
          .select('mail_address')
          .where('id', '=', id)
          .executeTakeFirstOrThrow()
      ).mail_address;
    const emailsOf = async (contact: string) =>
      (
        await db
          .selectFrom('contact_emails')
          .select('email')
          .where('contact_id', '=', contact)
          .orderBy('position')
          .execute()
      ).map((e) => e.email);

    await asciiMailDomains(db);
    t.same(await emailsOf(old!.id), ['jan@xn--mller-kva.example', 'ana@café.example']);
    t.same(await emailsOf(taken!.id), ['ana@xn--caf-dma.example']);
    const spellings = [...(await emailsOf(nfc!.id)), ...(await emailsOf(nfd!.id))];
    t.equal(spellings.filter((e) => e === 'bo@xn--caf-dma.example').length, 1, 'one spelling converted');
    t.equal(spellings.filter((e) => e !== 'bo@xn--caf-dma.example').length, 1, 'the other kept');
    t.equal(
      await addressOf(fromJan),
      'jan@xn--mller-kva.example',
      'a converted address, converted on its mail',
    );
    t.equal(await addressOf(fromAna), 'ana@café.example', 'a kept address, kept on its mail');

    // Run again, it changes nothing more.
    await asciiMailDomains(db);
    t.same(await emailsOf(old!.id), ['jan@xn--mller-kva.example', 'ana@café.example']);
    t.same([...(await emailsOf(nfc!.id)), ...(await emailsOf(nfd!.id))].sort(), [...spellings].sort());
    t.equal(await addressOf(fromAna), 'ana@café.example');
  });
});
