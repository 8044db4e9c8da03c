/**
 * What a request's headers say of its body: whether there is one.
 *
 * @module
 */

/**
 * Whether a request's header lines announce a body (a non-zero `Content-Length`, or any
 * `Transfer-Encoding`).
 *
 * @param fields The header lines, names and values in turn (`rawHeaders`).
 * @returns `true` if a body was sent.
 */
export function announcesBody(fields: readonly string[]): boolean {
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i];
    if (name.length === 17 && name.toLowerCase() === "transfer-encoding") return true;
    if (
      name.length === 14 && name.toLowerCase() === "content-length" &&
      fields[i + 1].trim() !== "0"
    ) return true;
  }
  return false;
}
