/**
 * What the headers and the runtime's server say of a message's body: its length, whether
 * there is one.
 *
 * @module
 */

/**
 * A message's `Content-Length` if it has a valid one.
 *
 * @param headers The message's headers.
 * @returns The length, or `undefined`.
 */
export function fixedLength(headers: Headers): number | undefined {
  const value = headers.get("content-length");
  if (value === null || !/^\d{1,15}$/.test(value)) return undefined;
  return Number(value);
}

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

/**
 * A request's body, or `null` if it has none. Deno's server hands over a stream for every
 * request but a GET or HEAD, body or not, and over HTTP/2 a body may come without a length
 * header; when the headers do not settle it, one read does.
 *
 * @param request A request from the runtime's server.
 * @returns The body to forward, or `null`.
 */
export async function requestBody(request: Request): Promise<ReadableStream<Uint8Array> | null> {
  const body = request.body;
  if (body === null || announcesBody(request.headers)) return body;
  const reader = body.getReader();
  let first = await reader.read();
  // Deno's stream for a bodyless request yields one empty chunk before it ends.
  while (!first.done && first.value.byteLength === 0) first = await reader.read();
  if (first.done) return null;
  let pending: Uint8Array | undefined = first.value;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (pending !== undefined) {
        controller.enqueue(pending);
        pending = undefined;
        return;
      }
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}
