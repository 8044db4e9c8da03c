/**
 * What both example apps answer when a request fails validation: 422 with a
 * `ValidationError` body, described in each app's OpenAPI document so that typed
 * clients get the body typed too.
 *
 * @module
 */

import { z } from "@hono/zod-openapi";
import type { Context } from "hono";

/** The body of every 422 answer. */
export const ValidationErrorSchema = z.object({
  error: z.literal("validation_failed"),
  issues: z.array(
    z.object({
      path: z.string().openapi({ example: "name" }),
      message: z.string().openapi({ example: "Too small: expected string to have >=1 characters" }),
    }),
  ),
}).openapi("ValidationError");

/** A `ValidationError` body. */
export type ValidationError = z.infer<typeof ValidationErrorSchema>;

/** The body of other error answers (404, 409). */
export const ErrorSchema = z.object({
  error: z.string().openapi({ example: "not_found" }),
  message: z.string().openapi({ example: "No pet with id 7" }),
}).openapi("Error");

/** The OpenAPI description of a 422 answer, for a route's `responses`. */
export const VALIDATION_RESPONSE = {
  content: { "application/json": { schema: ValidationErrorSchema } },
  description: "The request does not match the schema",
} as const;

/**
 * `OpenAPIHono`'s `defaultHook`: answers 422 with a `ValidationError` when a
 * request's params, query or body fail their zod schema.
 *
 * @param result The validation result.
 * @param c The request context.
 * @returns A 422 response on failure, nothing otherwise.
 */
export function answerValidationFailure(
  result: { success: true } | { success: false; error: z.ZodError },
  c: Context,
): Response | undefined {
  if (result.success) return undefined;
  const body: ValidationError = {
    error: "validation_failed",
    issues: result.error.issues.map((issue) => ({
      path: issue.path.map(String).join("."),
      message: issue.message,
    })),
  };
  return c.json(body, 422);
}
