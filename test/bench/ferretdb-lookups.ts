import { MongoClient, type Document } from "mongodb";
import { benchDatabase } from "../support/ferretdb.js";

// What a lookup costs on the MongoDB under test as a collection grows, by
// filter shape, and whether concurrent updates of one document keep every
// change: the two facts the MongoDB store's document design rests on
// (docs/capacity.md, "Lookups on FerretDB 1.x"). Numbers are printed, never
// asserted.
//
//   npm run build && node dist/test/bench/ferretdb-lookups.js [sizes]
//   (sizes: comma-separated, default 1000,5000,20000)
// Uses AUTHLINK_TEST_MONGODB_URI, else starts a FerretDB 1.24.2 (SQLite).

const sizes = (process.argv[2] ?? "1000,5000,20000").split(",").map(Number);

const ferret = await benchDatabase();
const { uri } = ferret;
const client = new MongoClient(uri, { maxPoolSize: 40 });
await client.connect();
const db = client.db(`authlink_bench_lookups_${Date.now()}`);

const perCall = async (call: (i: number) => Promise<unknown>, n = 10): Promise<string> => {
  const began = performance.now();
  for (let i = 0; i < n; i++) await call(i);
  return `${((performance.now() - began) / n).toFixed(1)} ms`;
};

try {
  const build = (await db.admin().command({ buildInfo: 1 })) as Document;
  console.log(`server: ${build.ferretdbVersion ? `FerretDB ${build.ferretdbVersion}` : `MongoDB ${build.version}`}`);

  console.log("\none findOne, by filter shape, as the collection grows (user-sized documents; a miss reads past every document):");
  const shapes: [string, (c: ReturnType<typeof db.collection>, size: number, i: number) => Promise<unknown>][] = [
    ["{_id} miss", (c, _size, i) => c.findOne({ _id: `missing-${i}` } as Document)],
    ["{_id} hit, newest", (c, size, i) => c.findOne({ _id: `id-${size - 1 - i}` } as Document)],
    ["{email} miss", (c, _size, i) => c.findOne({ email: `missing-${i}` })],
    ["{_id, other field} hit", (c, size, i) => c.findOne({ _id: `id-${size - 1 - i}`, type: "user" } as Document)],
    ["deleteOne {_id} miss", (c, _size, i) => c.deleteOne({ _id: `missing-${i}` } as Document)],
    ["insertOne", (c, size, i) => c.insertOne({ _id: `new-${size}-${i}` } as Document)],
  ];
  console.log(`  ${"size".padStart(7)}  ${shapes.map(([label]) => label.padStart(24)).join("")}`);
  for (const size of sizes) {
    const c = db.collection(`docs_${size}`);
    for (let start = 0; start < size; start += 1_000) {
      const docs = [];
      for (let i = start; i < Math.min(size, start + 1_000); i++) {
        docs.push({ _id: `id-${i}`, email: `user-${i}@example.com`, type: "user", createdAt: new Date(), userMetadataJson: "{}" });
      }
      await c.insertMany(docs as Document[]);
    }
    const cells = [];
    for (const [, shape] of shapes) cells.push((await perCall((i) => shape(c, size, i))).padStart(24));
    console.log(`  ${String(size).padStart(7)}  ${cells.join("")}`);
  }
  const plan = (await db.command({ explain: { find: `docs_${sizes[0]}`, filter: { _id: "id-1" } } }).catch(() => undefined)) as Document | undefined;
  if (plan?.queryPlanner) console.log(`\nexplain find {_id}: ${JSON.stringify(plan.queryPlanner)} filterPushdown=${String(plan.filterPushdown)}`);

  console.log("\n30 concurrent updateOne {_id} $addToSet of 30 different values to one document:");
  const set = db.collection("set");
  await set.insertOne({ _id: "k", values: [] } as Document);
  await Promise.all(Array.from({ length: 30 }, (_, i) => set.updateOne({ _id: "k" } as Document, { $addToSet: { values: `v${i}` } })));
  const kept = ((await set.findOne({ _id: "k" } as Document))?.values as unknown[] | undefined)?.length ?? 0;
  console.log(`  values kept: ${kept} of 30`);
} finally {
  await db.dropDatabase().catch(() => undefined);
  await client.close();
  await ferret.stop();
}
