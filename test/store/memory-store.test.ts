import { createMemoryStore } from "../../src/store/memory-store.js";
import { runStoreContract } from "./store-contract.js";

// The embedded store against the shared contract (store-contract.ts).

runStoreContract("embedded store", async () => ({ store: createMemoryStore() }));
