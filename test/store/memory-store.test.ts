import { createMemoryStore } from "../../src/store/memory-store.js";
import { runStoreContract } from "./store-contract.js";

runStoreContract("embedded store", async () => createMemoryStore());
