// What the clerk reads: a verdict (hand it over, or not), a title in large
// type, whose voucher it is, and why. From the server's answer to
// `POST /v1/redemptions`, or from the offline judgement (verify.js).

/** A time as the clerk reads it, e.g. "1 Dec 2026, 12:42". */
export const when = (iso) => {
  const d = new Date(iso);
  if (!iso || Number.isNaN(d.getTime())) return 'an unknown time';
  return new Intl.DateTimeFormat('en-GB', { dateStyle: 'medium', timeStyle: 'short' }).format(d);
};

const fullName = (b) => [b.first_name, b.last_name].filter((s) => typeof s === 'string' && s).join(' ');

const TITLES = {
  accepted: 'Hand it over',
  already_redeemed: 'Already collected',
  cancelled: 'Cancelled',
  not_yet_valid: 'Not yet valid',
  expired: 'Expired',
  invalid_code: 'Not one of ours',
  unverifiable: 'Cannot check offline',
};

function answer(outcome, source, fields) {
  return {
    outcome,
    source,
    verdict: outcome === 'accepted' ? 'ok' : 'refused',
    title: TITLES[outcome] || 'Not accepted',
    name: '',
    product: '',
    reason: '',
    ...fields,
  };
}

/** From the server's answer (status and JSON body). */
export function fromServer(status, body) {
  const b = body && typeof body === 'object' ? body : {};
  const who = { name: fullName(b), product: b.product_name || b.sku || '' };
  if (status === 200) {
    return answer('accepted', 'online', { ...who, reason: `Collected now at ${b.scanner || 'this counter'}.` });
  }
  switch (b.error) {
    case 'already_redeemed':
      return answer('already_redeemed', 'online', {
        ...who,
        reason: `Collected on ${when(b.redeemed_at)} at ${b.scanner || 'another counter'}.`,
      });
    case 'cancelled':
      return answer('cancelled', 'online', { ...who, reason: `The reservation was cancelled on ${when(b.cancelled_at)}.` });
    case 'not_yet_valid':
      return answer('not_yet_valid', 'online', { ...who, reason: `Pickup opens on ${when(b.redeem_from)}.` });
    case 'expired':
      return answer('expired', 'online', { ...who, reason: `Pickup closed on ${when(b.redeem_until)}.` });
    default:
      // invalid_code, and a code the server could not even read (too long,
      // empty): neither is a voucher of this shop.
      return answer('invalid_code', 'online', {
        reason: 'This is not a voucher of this shop, or it was altered.',
      });
  }
}

/** From the offline judgement; `queued` says the scan waits for upload. */
export function fromOffline(judged) {
  const claims = judged.claims || {};
  const who = { product: claims.sku || '' };
  switch (judged.outcome) {
    case 'accepted':
      return answer('accepted', 'offline', {
        ...who,
        name: 'Name not in the code: check it against the voucher',
        reason: 'Offline: the signature is genuine. The scan uploads when the network is back.',
      });
    case 'already_redeemed':
      return answer('already_redeemed', 'offline', {
        ...who,
        reason: `Collected on ${when(judged.at)} at ${judged.scanner || 'this counter'}.`,
      });
    case 'cancelled':
      return answer('cancelled', 'offline', { ...who, reason: 'The reservation was cancelled.' });
    case 'not_yet_valid':
      return answer('not_yet_valid', 'offline', { ...who, reason: `Pickup opens on ${when(judged.from)}.` });
    case 'expired':
      return answer('expired', 'offline', { ...who, reason: `Pickup closed on ${when(judged.until)}.` });
    case 'unverifiable':
      return answer('unverifiable', 'offline', {
        reason:
          judged.why === 'unsigned'
            ? 'An older voucher without a signature: only the server can check it. Try again when online.'
            : 'This scanner has no keys cached yet: connect it to the network once.',
      });
    default:
      return answer('invalid_code', 'offline', { reason: 'This is not a voucher of this shop, or it was altered.' });
  }
}
