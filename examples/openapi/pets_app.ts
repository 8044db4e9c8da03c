/**
 * The Pets API: a small OpenAPI app built with Hono and `@hono/zod-openapi`. The
 * agent serves it over its socket (`connection.serve(app.fetch)`); its document is
 * at `/openapi.json`, and `pets.d.ts` holds the types generated from it.
 *
 * @module
 */

import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { answerValidationFailure, ErrorSchema, VALIDATION_RESPONSE } from "./validation.ts";

/** A pet. */
export const PetSchema = z.object({
  id: z.number().int().positive().openapi({ example: 1 }),
  name: z.string().openapi({ example: "Rex" }),
  tag: z.string().optional().openapi({ example: "dog" }),
}).openapi("Pet");

/** A pet. */
export type Pet = z.infer<typeof PetSchema>;

/** What `POST /pets` takes. */
export const NewPetSchema = z.object({
  name: z.string().min(1).max(50).openapi({ example: "Rex" }),
  tag: z.string().min(1).max(20).optional().openapi({ example: "dog" }),
}).openapi("NewPet");

const listPets = createRoute({
  method: "get",
  path: "/pets",
  operationId: "listPets",
  summary: "List pets",
  request: {
    query: z.object({
      limit: z.coerce.number().int().min(1).max(100).optional().openapi({ example: 10 }),
    }),
  },
  responses: {
    200: {
      content: { "application/json": { schema: z.array(PetSchema) } },
      description: "The pets, oldest first",
    },
    422: VALIDATION_RESPONSE,
  },
});

const getPet = createRoute({
  method: "get",
  path: "/pets/{id}",
  operationId: "getPet",
  summary: "Get a pet by id",
  request: {
    params: z.object({
      id: z.coerce.number().int().positive().openapi({
        param: { name: "id", in: "path" },
        example: 1,
      }),
    }),
  },
  responses: {
    200: { content: { "application/json": { schema: PetSchema } }, description: "The pet" },
    404: { content: { "application/json": { schema: ErrorSchema } }, description: "No such pet" },
    422: VALIDATION_RESPONSE,
  },
});

const createPet = createRoute({
  method: "post",
  path: "/pets",
  operationId: "createPet",
  summary: "Add a pet",
  request: {
    body: { content: { "application/json": { schema: NewPetSchema } }, required: true },
  },
  responses: {
    201: { content: { "application/json": { schema: PetSchema } }, description: "The new pet" },
    422: VALIDATION_RESPONSE,
  },
});

/** The `info` and version of the Pets document. */
export const PETS_DOCUMENT_CONFIG = {
  openapi: "3.1.0",
  info: { title: "Pets", version: "1.0.0", description: "Served by an agent over swaggersocket" },
} as const;

/** Options for {@linkcode createPetsApp}. */
export interface PetsAppOptions {
  /** The pets to start with. Default: Rex and Tom. */
  pets?: Pet[];
}

/**
 * Creates a Pets app with its own in-memory store.
 *
 * @example Usage
 * ```ts ignore
 * const app = createPetsApp();
 * client.connection!.serve(app.fetch);
 * ```
 *
 * @param options The pets to start with.
 * @returns The app; serve `app.fetch`.
 */
export function createPetsApp(options: PetsAppOptions = {}) {
  const pets = new Map<number, Pet>();
  for (const pet of options.pets ?? [{ id: 1, name: "Rex", tag: "dog" }, { id: 2, name: "Tom" }]) {
    pets.set(pet.id, pet);
  }
  const app = new OpenAPIHono({ defaultHook: answerValidationFailure });
  app.openapi(listPets, (c) => {
    const { limit } = c.req.valid("query");
    return c.json([...pets.values()].slice(0, limit), 200);
  });
  app.openapi(getPet, (c) => {
    const { id } = c.req.valid("param");
    const pet = pets.get(id);
    if (!pet) return c.json({ error: "not_found", message: `No pet with id ${id}` }, 404);
    return c.json(pet, 200);
  });
  app.openapi(createPet, (c) => {
    const body = c.req.valid("json");
    const pet: Pet = { id: Math.max(0, ...pets.keys()) + 1, ...body };
    pets.set(pet.id, pet);
    return c.json(pet, 201);
  });
  app.doc31("/openapi.json", PETS_DOCUMENT_CONFIG);
  return app;
}

/**
 * The Pets OpenAPI document, as `/openapi.json` serves it.
 *
 * @returns The document.
 */
export function petsDocument(): unknown {
  return createPetsApp().getOpenAPI31Document(PETS_DOCUMENT_CONFIG);
}
