/**
 * OpenAPI both ways: an agent serves the Pets app and the server serves the Inventory
 * app (Hono + `@hono/zod-openapi`), each calling the other with `openapi-fetch` typed
 * from the types `openapi-typescript` generated from the other's document, passing
 * `connection.fetch` unchanged. In process over loopback, then the examples as a Deno
 * server and a Bun agent, then the committed generated files against a fresh run.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import createClient from "openapi-fetch";
import { generate, GENERATED, OPENAPI_DIR } from "../examples/openapi/generate.ts";
import {
  createInventoryApp,
  INVENTORY_DOCUMENT_CONFIG,
} from "../examples/openapi/inventory_app.ts";
import type { paths as InventoryPaths } from "../examples/openapi/inventory.d.ts";
import { createPetsApp, PETS_DOCUMENT_CONFIG } from "../examples/openapi/pets_app.ts";
import type {
  components as PetsComponents,
  paths as PetsPaths,
} from "../examples/openapi/pets.d.ts";
import { type Fixture, type Pair, spawnFixture, startPair, withTimeout } from "./_helpers.ts";

/** Guards each step (the machine is shared and may be loaded). */
const STEP_MS = 30_000;
/** Subprocesses stop by themselves after this long, should the test die without killing them. */
const WATCHDOG = ["--exit-after", "30000"];
/** Per-test bound above the guards inside (Bun's default is 5 s; the guards are what fire). */
const SLOW = { timeout: 120_000 };

type ValidationError = PetsComponents["schemas"]["ValidationError"];

describe("OpenAPI both ways, in process", () => {
  const inventory = createInventoryApp();
  const pets = createPetsApp();
  // Started in `before` but awaited by each test: Bun bounds hooks by 5 s whatever
  // their options say, and a loaded machine may need longer to connect.
  let ready: Promise<Pair>;

  before(() => {
    ready = (async () => {
      // The server serves the Inventory app; the agent serves the Pets app. Both are
      // Hono's `app.fetch`, unchanged.
      const started = await startPair({ handler: inventory.fetch }, {}, { name: "pets-agent" });
      started.client.connection!.serve(pets.fetch);
      return started;
    })();
    ready.catch(() => {}); // reported by the first test that awaits it
  });

  function connected(): Promise<Pair> {
    return withTimeout(ready, STEP_MS, "server and agent connected");
  }

  after(async () => {
    await (await ready.catch(() => undefined))?.close();
  });

  /** The server's typed client for the agent's Pets API. */
  function petsClient(pair: Pair) {
    return createClient<PetsPaths>({ baseUrl: "http://agent", fetch: pair.serverSide.fetch });
  }

  /** The agent's typed client for the server's Inventory API. */
  function inventoryClient(pair: Pair) {
    return createClient<InventoryPaths>({
      baseUrl: "http://server",
      fetch: pair.client.connection!.fetch,
    });
  }

  it("openapi-fetch lists and gets the agent's pets through Connection.fetch", SLOW, async () => {
    const pair = await connected();
    const client = petsClient(pair);
    const list = await withTimeout(client.GET("/pets"), STEP_MS, "GET /pets");
    assert.equal(list.response.status, 200);
    assert.deepEqual(list.data, [{ id: 1, name: "Rex", tag: "dog" }, { id: 2, name: "Tom" }]);

    const limited = await withTimeout(
      client.GET("/pets", { params: { query: { limit: 1 } } }),
      STEP_MS,
      "GET /pets?limit=1",
    );
    assert.deepEqual(limited.data?.map((pet) => pet.name), ["Rex"]);

    const rex = await withTimeout(
      client.GET("/pets/{id}", { params: { path: { id: 1 } } }),
      STEP_MS,
      "GET /pets/1",
    );
    assert.equal(rex.response.status, 200);
    const name: string | undefined = rex.data?.name; // typed from the document
    assert.equal(name, "Rex");

    const missing = await withTimeout(
      client.GET("/pets/{id}", { params: { path: { id: 99 } } }),
      STEP_MS,
      "GET /pets/99",
    );
    assert.equal(missing.response.status, 404);
    assert.equal(missing.data, undefined);
    assert.ok(missing.error && "message" in missing.error);
    assert.deepEqual(missing.error, { error: "not_found", message: "No pet with id 99" });
  });

  it("openapi-fetch creates a pet on the agent (201) and gets it back", SLOW, async () => {
    const pair = await connected();
    const client = petsClient(pair);
    const created = await withTimeout(
      client.POST("/pets", { body: { name: "Nibbles", tag: "hamster" } }),
      STEP_MS,
      "POST /pets",
    );
    assert.equal(created.response.status, 201);
    assert.ok(created.data);
    assert.equal(created.error, undefined);
    assert.deepEqual(created.data, { id: created.data.id, name: "Nibbles", tag: "hamster" });
    const back = await withTimeout(
      client.GET("/pets/{id}", { params: { path: { id: created.data.id } } }),
      STEP_MS,
      "GET the new pet",
    );
    assert.deepEqual(back.data, created.data);
  });

  it("a validation failure comes back as a 422 with its typed body", SLOW, async () => {
    const pair = await connected();
    const client = petsClient(pair);
    const invalid = await withTimeout(
      client.POST("/pets", { body: { name: "", tag: "x".repeat(21) } }),
      STEP_MS,
      "POST /pets (invalid)",
    );
    assert.equal(invalid.response.status, 422);
    assert.equal(invalid.data, undefined);
    assert.ok(invalid.error);
    // The error is typed from the document's ValidationError schema, not `unknown`.
    const body: ValidationError = invalid.error;
    assert.equal(body.error, "validation_failed");
    assert.deepEqual(body.issues.map((issue) => issue.path), ["name", "tag"]);
    for (const issue of body.issues) assert.equal(typeof issue.message, "string");

    // Params and query are validated too.
    const badId = await withTimeout(
      client.GET("/pets/{id}", { params: { path: { id: 0 } } }),
      STEP_MS,
      "GET /pets/0",
    );
    assert.equal(badId.response.status, 422);
    assert.ok(badId.error && "issues" in badId.error);
    assert.deepEqual(badId.error.issues.map((issue) => issue.path), ["id"]);
    const badLimit = await withTimeout(
      client.GET("/pets", { params: { query: { limit: 1000 } } }),
      STEP_MS,
      "GET /pets?limit=1000",
    );
    assert.equal(badLimit.response.status, 422);
    assert.deepEqual(badLimit.error?.issues.map((issue) => issue.path), ["limit"]);
  });

  it("the agent's /openapi.json through the socket equals the app's document", SLOW, async () => {
    const pair = await connected();
    const response = await withTimeout(
      pair.serverSide.fetch("/openapi.json"),
      STEP_MS,
      "GET /openapi.json from the agent",
    );
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /^application\/json/);
    assert.deepEqual(
      await response.json(),
      JSON.parse(JSON.stringify(pets.getOpenAPI31Document(PETS_DOCUMENT_CONFIG))),
    );
  });

  it("the other direction: the agent calls the server's Inventory API, typed", SLOW, async () => {
    const pair = await connected();
    const client = inventoryClient(pair);
    const items = await withTimeout(client.GET("/items"), STEP_MS, "GET /items");
    assert.equal(items.response.status, 200);
    assert.deepEqual(items.data?.map((item) => item.sku), ["BOW-001", "LSH-002", "BAL-003"]);

    const bowl = await withTimeout(
      client.GET("/items/{sku}", { params: { path: { sku: "BOW-001" } } }),
      STEP_MS,
      "GET /items/BOW-001",
    );
    assert.deepEqual(bowl.data, { sku: "BOW-001", name: "Dog bowl", stock: 12 });

    const reserved = await withTimeout(
      client.POST("/reservations", { body: { sku: "LSH-002", quantity: 2 } }),
      STEP_MS,
      "POST /reservations",
    );
    assert.equal(reserved.response.status, 201);
    const remaining: number | undefined = reserved.data?.remaining;
    assert.equal(remaining, 1);

    const conflict = await withTimeout(
      client.POST("/reservations", { body: { sku: "LSH-002", quantity: 2 } }),
      STEP_MS,
      "POST /reservations (too many)",
    );
    assert.equal(conflict.response.status, 409);
    assert.ok(conflict.error && "message" in conflict.error);
    assert.equal(conflict.error.error, "insufficient_stock");

    const invalid = await withTimeout(
      client.POST("/reservations", { body: { sku: "nope", quantity: 0 } }),
      STEP_MS,
      "POST /reservations (invalid)",
    );
    assert.equal(invalid.response.status, 422);
    assert.ok(invalid.error && "issues" in invalid.error);
    assert.equal(invalid.error.error, "validation_failed");
    assert.deepEqual(invalid.error.issues.map((issue) => issue.path), ["sku", "quantity"]);

    const response = await withTimeout(
      pair.client.connection!.fetch("/openapi.json"),
      STEP_MS,
      "GET /openapi.json from the server",
    );
    assert.deepEqual(
      await response.json(),
      JSON.parse(JSON.stringify(inventory.getOpenAPI31Document(INVENTORY_DOCUMENT_CONFIG))),
    );
  });
});

describe("OpenAPI both ways, across runtimes", () => {
  it(
    "examples/openapi: the Deno server and the Bun agent call each other, typed",
    SLOW,
    async () => {
      const fixtures: Fixture[] = [];
      try {
        const server = spawnFixture("deno", "examples/openapi/deno_server.ts", [
          "--hostname",
          "127.0.0.1",
          "--port",
          "0",
          ...WATCHDOG,
        ]);
        fixtures.push(server);
        const [, port] = await server.waitFor(/^listening on ws:\/\/127\.0\.0\.1:(\d+)$/, STEP_MS);
        const agent = spawnFixture("bun", "examples/openapi/bun_agent.ts", [
          `ws://127.0.0.1:${port}`,
          "--name",
          "openapi-test",
          ...WATCHDOG,
        ]);
        fixtures.push(agent);
        const [, id] = await agent.waitFor(/^connected as (\S+), serving the Pets API$/, STEP_MS);

        // The agent called the server's Inventory API…
        await agent.waitFor(/^(done|calling the server failed: .*)$/, STEP_MS);
        const agentSaid = (label: string) => lineAfter(agent.lines, `${label}: `);
        assert.deepEqual(JSON.parse(agentSaid("items")), ["BOW-001", "LSH-002", "BAL-003"]);
        assert.equal(
          agentSaid("reserved"),
          '201 {"id":1,"sku":"LSH-002","quantity":2,"remaining":1}',
        );
        assert.equal(agentSaid("conflict"), "409 insufficient_stock");
        assert.equal(agentSaid("invalid"), '422 ["sku","quantity"]');
        assert.equal(agentSaid("document"), "Inventory 1.0.0");
        assert.ok(agent.lines.includes("done"), agent.lines.join("\n"));

        // …and the server called the agent's Pets API.
        const prefix = `agent ${id} `;
        await server.waitFor(new RegExp(`^agent ${id} (done|failed: .*)$`), STEP_MS);
        const serverSaid = (label: string) => lineAfter(server.lines, `${prefix}${label}: `);
        assert.deepEqual(JSON.parse(serverSaid("pets")), ["Rex", "Tom"]);
        assert.deepEqual(JSON.parse(serverSaid("pet 1")), { id: 1, name: "Rex", tag: "dog" });
        assert.equal(serverSaid("pet 99"), "404 No pet with id 99");
        assert.equal(serverSaid("created"), '201 {"id":3,"name":"Nibbles","tag":"hamster"}');
        assert.match(serverSaid("invalid"), /^422 validation_failed \["name: .+"\]$/);
        assert.equal(serverSaid("document"), "Pets 1.0.0 /pets,/pets/{id}");
        assert.ok(server.lines.includes(`${prefix}done`), server.lines.join("\n"));
      } finally {
        for (const fixture of fixtures.reverse()) {
          await withTimeout(fixture.kill(), 20_000, "killing a fixture").catch(console.error);
        }
      }
    },
  );
});

describe("OpenAPI generated files", () => {
  it("the committed documents and openapi-typescript types are up to date", SLOW, async () => {
    const dir = await mkdtemp(join(tmpdir(), "swaggersocket-openapi-"));
    try {
      await withTimeout(generate(dir), 60_000, "regenerating the OpenAPI files");
      for (const name of Object.keys(GENERATED)) {
        for (const file of [`${name}.openapi.json`, `${name}.d.ts`]) {
          assert.equal(
            await readFile(join(dir, file), "utf8"),
            await readFile(join(OPENAPI_DIR, file), "utf8"),
            `examples/openapi/${file} is stale: run \`npm run openapi:generate\``,
          );
        }
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/** The rest of the first line that starts with `prefix`. */
function lineAfter(lines: string[], prefix: string): string {
  const line = lines.find((candidate) => candidate.startsWith(prefix));
  assert.ok(
    line !== undefined,
    `no line starting with ${JSON.stringify(prefix)} in:\n${lines.join("\n")}`,
  );
  return line.slice(prefix.length);
}
