import react from "@vitejs/plugin-react";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

// Built into the repository's dist/ (npm run build:examples), next to the
// compiled example backend, which serves it under /admin/.
export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/admin/",
  plugins: [react()],
  logLevel: "warn",
  build: {
    outDir: fileURLToPath(new URL("../../dist/examples/admin-link-generator", import.meta.url)),
    emptyOutDir: true,
    target: "es2022",
  },
});
