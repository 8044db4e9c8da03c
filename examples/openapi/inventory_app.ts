/**
 * The Inventory API: the server's OpenAPI app, which agents call over their socket
 * (the other direction). Built like the Pets app; `inventory.d.ts` holds the
 * types generated from its `/openapi.json`.
 *
 * @module
 */

import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { answerValidationFailure, ErrorSchema, VALIDATION_RESPONSE } from "./validation.ts";

const SKU = z.string().regex(/^[A-Z]{3}-\d{3}$/).openapi({ example: "BOW-001" });

/** A stocked item. */
export const ItemSchema = z.object({
  sku: SKU,
  name: z.string().openapi({ example: "Dog bowl" }),
  stock: z.number().int().nonnegative().openapi({ example: 12 }),
}).openapi("Item");

/** A stocked item. */
export type Item = z.infer<typeof ItemSchema>;

/** What `POST /reservations` takes. */
export const NewReservationSchema = z.object({
  sku: SKU,
  quantity: z.number().int().min(1).max(10).openapi({ example: 2 }),
}).openapi("NewReservation");

/** A reservation of some stock. */
export const ReservationSchema = z.object({
  id: z.number().int().positive().openapi({ example: 1 }),
  sku: SKU,
  quantity: z.number().int().openapi({ example: 2 }),
  remaining: z.number().int().nonnegative().openapi({ example: 10 }),
}).openapi("Reservation");

const listItems = createRoute({
  method: "get",
  path: "/items",
  operationId: "listItems",
  summary: "List stocked items",
  responses: {
    200: {
      content: { "application/json": { schema: z.array(ItemSchema) } },
      description: "Every item",
    },
  },
});

const getItem = createRoute({
  method: "get",
  path: "/items/{sku}",
  operationId: "getItem",
  summary: "Get an item by SKU",
  request: {
    params: z.object({ sku: SKU.openapi({ param: { name: "sku", in: "path" } }) }),
  },
  responses: {
    200: { content: { "application/json": { schema: ItemSchema } }, description: "The item" },
    404: { content: { "application/json": { schema: ErrorSchema } }, description: "No such item" },
    422: VALIDATION_RESPONSE,
  },
});

const reserve = createRoute({
  method: "post",
  path: "/reservations",
  operationId: "reserve",
  summary: "Reserve stock",
  request: {
    body: { content: { "application/json": { schema: NewReservationSchema } }, required: true },
  },
  responses: {
    201: {
      content: { "application/json": { schema: ReservationSchema } },
      description: "Reserved",
    },
    404: { content: { "application/json": { schema: ErrorSchema } }, description: "No such item" },
    409: {
      content: { "application/json": { schema: ErrorSchema } },
      description: "Not enough stock",
    },
    422: VALIDATION_RESPONSE,
  },
});

/** The `info` and version of the Inventory document. */
export const INVENTORY_DOCUMENT_CONFIG = {
  openapi: "3.1.0",
  info: { title: "Inventory", version: "1.0.0", description: "Served by the server to agents" },
} as const;

/** Options for {@linkcode createInventoryApp}. */
export interface InventoryAppOptions {
  /** The items to start with. Default: a bowl, a leash and a ball. */
  items?: Item[];
}

/**
 * Creates an Inventory app with its own in-memory store.
 *
 * @example Usage
 * ```ts ignore
 * const server = new WebSocketServer({ port: 8080, handler: createInventoryApp().fetch });
 * ```
 *
 * @param options The items to start with.
 * @returns The app; serve `app.fetch`.
 */
export function createInventoryApp(options: InventoryAppOptions = {}) {
  const items = new Map<string, Item>();
  const initial = options.items ?? [
    { sku: "BOW-001", name: "Dog bowl", stock: 12 },
    { sku: "LSH-002", name: "Leash", stock: 3 },
    { sku: "BAL-003", name: "Ball", stock: 0 },
  ];
  for (const item of initial) items.set(item.sku, { ...item });
  let reservations = 0;
  const app = new OpenAPIHono({ defaultHook: answerValidationFailure });
  app.openapi(listItems, (c) => c.json([...items.values()], 200));
  app.openapi(getItem, (c) => {
    const { sku } = c.req.valid("param");
    const item = items.get(sku);
    if (!item) return c.json({ error: "not_found", message: `No item ${sku}` }, 404);
    return c.json(item, 200);
  });
  app.openapi(reserve, (c) => {
    const { sku, quantity } = c.req.valid("json");
    const item = items.get(sku);
    if (!item) return c.json({ error: "not_found", message: `No item ${sku}` }, 404);
    if (item.stock < quantity) {
      return c.json({
        error: "insufficient_stock",
        message: `Only ${item.stock} of ${sku} left`,
      }, 409);
    }
    item.stock -= quantity;
    return c.json({ id: ++reservations, sku, quantity, remaining: item.stock }, 201);
  });
  app.doc31("/openapi.json", INVENTORY_DOCUMENT_CONFIG);
  return app;
}

/**
 * The Inventory OpenAPI document, as `/openapi.json` serves it.
 *
 * @returns The document.
 */
export function inventoryDocument(): unknown {
  return createInventoryApp().getOpenAPI31Document(INVENTORY_DOCUMENT_CONFIG);
}
