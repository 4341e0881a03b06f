import type { DepartmentRole } from '../../src/db/types.ts';
import type { Random } from './random.ts';

// The demo company: an outdoor-gear shop with a help desk of six departments. Every name,
// address and number here is made up; domains are under .example (RFC 2606).

export const COMPANY_DOMAIN = 'acme-outdoor.example';

export const DEPARTMENT_NAMES = ['Support', 'Sales', 'Returns', 'Wholesale', 'Billing', 'Marketing'] as const;
export type DepartmentName = (typeof DEPARTMENT_NAMES)[number];

export const DEPARTMENTS: Record<
  DepartmentName,
  { description: string; onContactForm: boolean; toSolve: boolean; address: string }
> = {
  Support: {
    description: 'Orders, deliveries, product questions and technical help.',
    onContactForm: true,
    toSolve: true,
    address: `support@${COMPANY_DOMAIN}`,
  },
  Sales: {
    description: 'Advice before buying, quotes and availability.',
    onContactForm: true,
    toSolve: true,
    address: `sales@${COMPANY_DOMAIN}`,
  },
  Returns: {
    description: 'Returns, exchanges, warranty claims and refunds.',
    onContactForm: true,
    toSolve: true,
    address: `returns@${COMPANY_DOMAIN}`,
  },
  Wholesale: {
    description: 'Resellers, bulk orders and price lists.',
    onContactForm: false,
    toSolve: true,
    address: `wholesale@${COMPANY_DOMAIN}`,
  },
  Billing: {
    description: 'Invoices, payments, VAT and credit notes.',
    onContactForm: true,
    toSolve: true,
    address: `billing@${COMPANY_DOMAIN}`,
  },
  Marketing: {
    description: 'Social media, partnerships, press and giveaways.',
    onContactForm: false,
    toSolve: false,
    address: `hello@${COMPANY_DOMAIN}`,
  },
};

export interface AgentPlan {
  name: string;
  role: 'admin' | 'agent';
  departments: Partial<Record<DepartmentName, DepartmentRole>>;
  /** Share of the seeded period after which the agent joined (0: from the start). */
  joinedAt?: number;
  /** Share of the seeded period after which the agent left and was disabled. */
  leftAt?: number;
}

export const AGENTS: AgentPlan[] = [
  { name: 'Eva Horváth', role: 'admin', departments: { Support: 'manager' } },
  {
    name: 'Martina Kovács',
    role: 'agent',
    departments: { Support: 'manager', Returns: 'manager', Billing: 'supervisor' },
  },
  {
    name: 'Daniel Ortiz',
    role: 'agent',
    departments: { Sales: 'manager', Wholesale: 'manager', Marketing: 'reader' },
  },
  { name: 'Priya Raman', role: 'agent', departments: { Support: 'supervisor', Returns: 'solver' } },
  { name: 'Tomás Berger', role: 'agent', departments: { Support: 'supervisor' } },
  { name: 'Lena Fischer', role: 'agent', departments: { Support: 'solver' } },
  { name: 'Omar Haddad', role: 'agent', departments: { Support: 'solver', Returns: 'solver' } },
  { name: 'Sofia Rossi', role: 'agent', departments: { Support: 'solver' } },
  { name: 'Jakub Novák', role: 'agent', departments: { Support: 'solver', Billing: 'reader' } },
  { name: 'Hannah Schmidt', role: 'agent', departments: { Support: 'solver' } },
  { name: 'Mateo Silva', role: 'agent', departments: { Support: 'solver', Sales: 'solver' } },
  { name: 'Aiko Tanaka', role: 'agent', departments: { Support: 'solver' }, joinedAt: 0.4 },
  {
    name: 'Lucas Martin',
    role: 'agent',
    departments: { Support: 'solver', Returns: 'solver' },
    leftAt: 0.65,
  },
  { name: 'Grace Okafor', role: 'agent', departments: { Returns: 'supervisor', Support: 'reader' } },
  { name: 'Noah Weber', role: 'agent', departments: { Returns: 'solver' } },
  { name: 'Inês Duarte', role: 'agent', departments: { Returns: 'solver', Support: 'solver' } },
  { name: 'Chloé Dubois', role: 'agent', departments: { Sales: 'supervisor' } },
  { name: 'Ethan Brooks', role: 'agent', departments: { Sales: 'solver' } },
  { name: 'Mia Laurent', role: 'agent', departments: { Sales: 'solver', Marketing: 'solver' } },
  { name: 'Ravi Patel', role: 'agent', departments: { Sales: 'solver', Wholesale: 'solver' } },
  { name: 'Olga Ivanova', role: 'agent', departments: { Wholesale: 'supervisor', Billing: 'solver' } },
  { name: 'Felix Wagner', role: 'agent', departments: { Wholesale: 'solver' }, joinedAt: 0.2 },
  { name: 'Nora Lindqvist', role: 'agent', departments: { Billing: 'manager' } },
  { name: 'Samuel Adeyemi', role: 'agent', departments: { Billing: 'solver' } },
  { name: 'Clara Moreau', role: 'agent', departments: { Billing: 'solver', Support: 'reader' } },
  { name: 'Julia Costa', role: 'agent', departments: { Marketing: 'manager', Sales: 'reader' } },
  { name: 'Leo Kim', role: 'agent', departments: { Marketing: 'solver' } },
  { name: 'Zoe Andersen', role: 'agent', departments: { Marketing: 'solver', Support: 'solver' } },
];

/** firstname.lastname@company, ASCII only. */
export function agentEmail(name: string): string {
  const ascii = name
    .normalize('NFD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase();
  return `${ascii.replace(/[^a-z]+/g, '.')}@${COMPANY_DOMAIN}`;
}

// Customers.

const FIRST_NAMES = [
  'Anna',
  'Ben',
  'Carla',
  'David',
  'Elif',
  'Finn',
  'Gabriela',
  'Hugo',
  'Ida',
  'Jonas',
  'Karin',
  'Liam',
  'Marta',
  'Nils',
  'Olivia',
  'Pavel',
  'Quentin',
  'Rosa',
  'Stefan',
  'Tereza',
  'Ulla',
  'Viktor',
  'Wiebke',
  'Xavier',
  'Yara',
  'Zdeněk',
  'Alice',
  'Bruno',
  'Camille',
  'Dominik',
  'Emma',
  'Filip',
  'Greta',
  'Henrik',
  'Isabel',
  'Jan',
  'Klara',
  'Lukas',
  'Maja',
  'Nina',
  'Oskar',
  'Petra',
  'Rafael',
  'Sara',
  'Tobias',
  'Vera',
  'William',
  'Zuzana',
  'Aaron',
  'Bianca',
  'Chen',
  'Dara',
  'Emil',
  'Fatima',
  'George',
  'Hana',
  'Ivan',
] as const;
const LAST_NAMES = [
  'Müller',
  'Svoboda',
  'García',
  'Jensen',
  'Kowalski',
  'Rossi',
  'Dvořák',
  'Novotná',
  'Smith',
  'Lefebvre',
  'Bauer',
  'Nielsen',
  'Horák',
  'Santos',
  'Kaya',
  'Berg',
  'Fontaine',
  'Zimmermann',
  'Procházka',
  'Wood',
  'Lindberg',
  'Romano',
  'Keller',
  'Marek',
  'Hoffmann',
  'Costa',
  'Janssen',
  'Pokorný',
  'Walsh',
  'Ferreira',
  'Meyer',
  'Černá',
  'Olsen',
  'Brown',
  'Vidal',
  'Krause',
  'Nowak',
  'Evans',
  'Hájek',
  'Moreno',
] as const;
const MAIL_DOMAINS = [
  'mail.example',
  'post.example',
  'inbox.example',
  'webmail.example',
  'net.example',
] as const;
const COMPANIES = [
  'Summit Sports',
  'Trailhead Store',
  'Alpine Corner',
  'Riverside Outfitters',
  'Base Camp Shop',
  'North Ridge Retail',
  'Forest & Field',
  'Peak Performance',
  'Wild Path Gear',
  'Canyon Supplies',
] as const;

export interface Person {
  name: string;
  email: string | null;
  phone: string | null;
  /** Writes to Wholesale about bulk orders. */
  reseller: boolean;
  /** How often they come back (Zipf-like weight). */
  weight: number;
}

export function makePeople(random: Random, count: number): Person[] {
  const people: Person[] = [];
  const usedEmails = new Set<string>();
  const usedPhones = new Set<string>();
  for (let i = 0; i < count; i++) {
    const first = random.pick(FIRST_NAMES);
    const last = random.pick(LAST_NAMES);
    const reseller = random.chance(0.04);
    const ascii = (s: string) =>
      s
        .normalize('NFD')
        .replace(/[\u0300-\u036f]/g, '')
        .toLowerCase();
    let email: string | null = null;
    if (random.chance(0.93)) {
      const domain = reseller
        ? `${ascii(random.pick(COMPANIES)).replace(/[^a-z]+/g, '')}.example`
        : random.pick(MAIL_DOMAINS);
      let local = `${ascii(first)}.${ascii(last)}`;
      if (usedEmails.has(`${local}@${domain}`)) local = `${local}${i}`;
      email = `${local}@${domain}`;
      usedEmails.add(email);
    }
    let phone: string | null = null;
    if (email === null || random.chance(0.55)) {
      do {
        phone = `+${random.pick(['420', '421', '49', '43', '48', '44'])}${random.int(600_000_000, 799_999_999)}`;
      } while (usedPhones.has(phone));
      usedPhones.add(phone);
    }
    people.push({
      name: random.chance(0.9) ? `${first} ${last}` : first,
      email,
      phone,
      reseller,
      weight: 1 / (1 + (i % 97)) ** 0.6,
    });
  }
  return people;
}

// What customers write about, by the department that should handle it.

export interface Topic {
  department: DepartmentName;
  subjects: readonly string[];
  openings: readonly string[];
  tags: readonly string[];
}

export const TOPICS: readonly Topic[] = [
  {
    department: 'Support',
    subjects: [
      'Where is my order {order}?',
      'Order {order} has not arrived yet',
      'Tracking number for order {order}',
      'Wrong size delivered in order {order}',
      'How do I reproof my {product}?',
      'Zip on my {product} is stuck',
      'Can I change the delivery address of {order}?',
      'Missing item in order {order}',
      'Question about the {product}',
      'Cannot log in to my account',
    ],
    openings: [
      'Hello, I ordered on {date} and the parcel has still not arrived. The tracking page has not changed for days. Can you check?',
      'Hi, I received my order today but one item is missing from the box. The packing slip lists it. What should I do?',
      'Good morning, I would like to know how to wash and reproof my {product}. The label is not very clear.',
      'Hello, the zip of my {product} got stuck after two weeks of use. Is this something you can fix or replace?',
      'Hi, I moved last week. Could you please send order {order} to my new address instead?',
      'Hello, I keep getting an error when I try to sign in to my account, even after resetting the password.',
    ],
    tags: ['delivery', 'order', 'product-question', 'account', 'care'],
  },
  {
    department: 'Sales',
    subjects: [
      'Is the {product} in stock in size M?',
      'Advice on a tent for a family of four',
      'Price match for {product}',
      'Quote for 12 {product}s for our club',
      'When will the {product} be back in stock?',
      'Difference between the two {product} models',
    ],
    openings: [
      'Hello, I am looking at the {product}. Do you have it in size M and in green? I would need it before the end of the month.',
      'Hi, we are a family of four planning a trip to Norway. Which tent would you recommend for wind and rain?',
      'Hello, another shop sells the {product} for less. Do you match prices?',
      'Good afternoon, our hiking club would like to order 12 {product}s with our logo. Could you send a quote?',
    ],
    tags: ['stock', 'quote', 'advice', 'price-match'],
  },
  {
    department: 'Returns',
    subjects: [
      'Return request for order {order}',
      'Refund for order {order} not received',
      'Exchange {product} for a bigger size',
      'Warranty claim: {product} seam ripped',
      'Damaged {product} on arrival',
    ],
    openings: [
      'Hello, I would like to return the {product} from order {order}. It does not fit. How do I send it back?',
      'Hi, I returned order {order} three weeks ago and have not received the refund yet.',
      'Hello, can I exchange my {product} for one size bigger? The original is unused with tags.',
      'Hi, the seam of my {product} ripped on the second trip. I think this is covered by the warranty.',
      'Hello, the {product} arrived damaged, the box was crushed. Photos attached.',
    ],
    tags: ['refund', 'exchange', 'warranty', 'damaged'],
  },
  {
    department: 'Wholesale',
    subjects: [
      'Reseller price list 2026',
      'Bulk order: 40 {product}s',
      'Becoming a reseller',
      'Delivery terms for our store',
      'Reorder for {company}',
    ],
    openings: [
      'Hello, we run an outdoor store and would like to receive your current reseller price list and terms.',
      'Hi, we would like to order 40 {product}s for the season. What is the lead time and the price per piece?',
      'Good morning, {company} would like to become a reseller of your brand. What are the conditions?',
    ],
    tags: ['reseller', 'bulk', 'price-list'],
  },
  {
    department: 'Billing',
    subjects: [
      'Invoice for order {order}',
      'Charged twice for order {order}',
      'VAT number on my invoice',
      'Payment failed but money was taken',
      'Credit note for return {order}',
    ],
    openings: [
      'Hello, I need an invoice for order {order} with our company details for accounting.',
      'Hi, my card was charged twice for order {order}. Please refund the second payment.',
      'Hello, could you add our VAT number to the invoice of order {order}?',
      'Hi, the payment page showed an error but the money left my account. Was the order placed?',
    ],
    tags: ['invoice', 'payment', 'vat', 'double-charge'],
  },
  {
    department: 'Marketing',
    subjects: [
      'Collaboration proposal',
      'Photo of your {product} on our trip',
      'Giveaway question',
      'Press inquiry about sustainability',
      'Sponsorship for a trail race',
    ],
    openings: [
      'Hi! I run an outdoor channel with 80k followers and would love to feature your {product}.',
      'Hello, here is a photo of your {product} on top of the mountain, feel free to share it!',
      'Hi, I took part in your giveaway last week. When will the winners be announced?',
      'Hello, we are organising a trail race in June and are looking for sponsors.',
    ],
    tags: ['collaboration', 'social', 'giveaway', 'press'],
  },
];

const PRODUCTS = [
  'rain jacket',
  'trekking pole',
  'sleeping bag',
  'backpack',
  'tent',
  'down jacket',
  'hiking boot',
  'headlamp',
  'fleece',
  'camping stove',
  'softshell',
  'water filter',
] as const;

export function fill(template: string, random: Random, at: Date): string {
  return template
    .replaceAll('{order}', `#${random.int(100_000, 999_999)}`)
    .replaceAll('{product}', random.pick(PRODUCTS))
    .replaceAll('{company}', random.pick(COMPANIES))
    .replaceAll('{date}', new Date(at.getTime() - random.int(3, 20) * 86_400_000).toISOString().slice(0, 10));
}

export const CUSTOMER_FOLLOW_UPS = [
  'Thank you, but it still does not work. Any other idea?',
  'Thanks for the quick answer! One more question: does this also apply to the second item?',
  'I checked again and the problem is still there. Photos attached.',
  'Sorry, I forgot to mention the order number: {order}.',
  'Any news on this? I am still waiting.',
  'Great, that solved it. Thank you!',
  'Could you please confirm once it is done?',
  'I sent the parcel back today, tracking attached.',
] as const;

export const AGENT_REPLIES: Record<DepartmentName, readonly string[]> = {
  Support: [
    'Thank you for your message. I checked with the carrier: your parcel is in the depot and will be delivered tomorrow.',
    'Sorry about that! I have sent the missing item today, you will get a tracking number by email.',
    'Wash it at 30 °C with a technical detergent, then tumble dry on low heat to reactivate the coating.',
    'I have reset your account, please try to sign in again with the link I just sent.',
    'Done: the delivery address is changed. The parcel leaves our warehouse tomorrow.',
  ],
  Sales: [
    'Yes, the {product} is in stock in size M and green. Shall I reserve one for you?',
    'For four people in wind and rain I would recommend a tunnel tent with a porch. Links below.',
    'Here is our quote for 12 pieces, including the logo print. It is valid for 30 days.',
    'We expect it back in stock in two weeks. I have added you to the notification list.',
  ],
  Returns: [
    'Your return is registered. Please print the attached label and drop the parcel at any pick-up point.',
    'The refund was issued today; it usually takes 3-5 business days to appear on your statement.',
    'The exchange is on its way, no need to wait for the original to arrive.',
    'This is covered by the warranty. We will send a replacement as soon as we receive the item.',
  ],
  Wholesale: [
    'Please find our reseller price list and terms attached. Minimum order is 20 pieces per model.',
    'Lead time is 3 weeks for 40 pieces; the price per piece is in the attached offer.',
    'Thank you for your interest! I have sent you the reseller application form.',
  ],
  Billing: [
    'Please find the invoice attached, with your company details.',
    'You are right, the second payment was a duplicate. It has been refunded today.',
    'I have reissued the invoice with your VAT number.',
    'The order went through; the error page was a glitch on the payment provider side.',
  ],
  Marketing: [
    'Thanks for reaching out! Could you send us your media kit and audience stats?',
    'What a great photo! May we share it on our channels with your name?',
    'Winners will be announced on Friday on our profile. Good luck!',
    'Thank you, we will review the sponsorship proposal and come back to you next week.',
  ],
};

export const NOTES = [
  'Customer called about this too, same issue.',
  'Checked the warehouse system: shipped on time, carrier delay.',
  'VIP customer, please handle with care.',
  'Waiting for the carrier investigation, reminder set.',
  'Refund approved by the team lead.',
  'Second ticket about the same order, merged the info here.',
] as const;

export const TRANSFER_NOTES = [
  'This is about a refund, over to you.',
  'Invoice question, Billing please.',
  'Reseller inquiry, passing it on.',
  'Looks like a return, not a support case.',
  'Product advice before buying, Sales please.',
  'Social collaboration request, Marketing please.',
] as const;

export const CHAT_LINES = {
  customer: [
    'Hi, is anyone there?',
    'I have a question about my order {order}.',
    'Does the {product} come in blue?',
    'When will it be delivered?',
    'OK, thanks!',
    'Perfect, that helps.',
    'Can I still change the size?',
  ],
  agent: [
    'Hi! How can I help you today?',
    'Let me check that for you, one moment please.',
    'Yes, it is available in blue in all sizes.',
    'It will be delivered within 2 business days.',
    'I have updated the order for you.',
    'Is there anything else I can help with?',
  ],
} as const;

export const RATING_COMMENTS = {
  positive: ['Quick and kind, thanks!', 'Very helpful.', 'Problem solved in minutes.', 'Great service!'],
  negative: ['Took far too long.', 'My problem is not solved.', 'Nobody answered my question.'],
} as const;
