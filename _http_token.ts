/**
 * HTTP's token (RFC 9110 §5.6.2): what a method, a field name and many parameter values are
 * made of. One pattern for the library; `protocol/` keeps its own, as it imports nothing
 * from outside itself.
 *
 * @module
 */

/** A whole token: one or more `tchar`s and nothing else. */
export const TOKEN: RegExp = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
