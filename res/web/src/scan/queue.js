// The scans accepted offline, waiting to be told to the server.
//
// Each queued scan keeps the nonce it was given when it was read, and every
// upload of it sends that nonce: `POST /v1/redemptions` answers a repeated
// nonce with its first answer and creates nothing, so an upload whose answer
// was lost, or one that raced the online attempt it stands for, is simply
// sent again. The order is kept: scans upload oldest first.
//
// An upload that the server refuses (someone redeemed the code first, at
// another counter; it was cancelled before this scanner heard of it; it is
// outside its window; it is not ours) means a unit may have been handed over
// that should not have been: the scan moves to the flagged list, which the
// page shows until the clerk dismisses it. This is the price of deciding
// offline (docs/design.md, "Offline scanning").

export function enqueue(store, item) {
  store.queue = [...store.queue, item];
}

/**
 * Uploads the queue in order through `send(item)`, which resolves to
 * `{status, body}` or rejects on a network error.
 *
 * Stops at the first network error, 5xx or 429 (the rest waits for the next
 * try), and at a 401 (the token was revoked: nothing can upload until the
 * clerk enters a new one). Returns `{uploaded, flagged, unauthorized, left}`.
 */
export async function flush(store, send) {
  const result = { uploaded: [], flagged: [], unauthorized: false, left: 0 };
  for (const item of store.queue) {
    let res;
    try {
      res = await send(item);
    } catch {
      break;
    }
    if (res.status === 401) {
      result.unauthorized = true;
      break;
    }
    if (res.status >= 500 || res.status === 429) break;
    const body = res.body && typeof res.body === 'object' ? res.body : {};
    if (res.status === 200) {
      result.uploaded.push({ ...item, answer: body });
    } else {
      // A refusal, or an answer this page does not know (a 4xx that says the
      // request itself was wrong): either way retrying cannot change it.
      const flag = {
        ...item,
        status: res.status,
        error: typeof body.error === 'string' ? body.error : `http_${res.status}`,
        answer: body,
        flagged_at: new Date().toISOString(),
      };
      result.flagged.push(flag);
      store.flagged = [...store.flagged, flag];
    }
    store.queue = store.queue.filter((q) => q.nonce !== item.nonce);
  }
  result.left = store.queue.length;
  return result;
}
