// What both pages share about HTTP answers.

/** The answer's JSON body, or null when it has none (or it is not JSON). */
export async function jsonBody(res) {
  try {
    return await res.json();
  } catch {
    return null;
  }
}
