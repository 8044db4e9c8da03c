/**
 * What a request's headers say of its body: whether there is one.
 *
 * @module
 */

/**
 * Whether a request's headers announce a body (a non-zero `Content-Length`, or any
 * `Transfer-Encoding`).
 *
 * @param headers The request's headers.
 * @returns `true` if a body was sent.
 */
export function announcesBody(headers: Headers): boolean {
  if (headers.has("transfer-encoding")) return true;
  const length = headers.get("content-length");
  return length !== null && length.trim() !== "0";
}
