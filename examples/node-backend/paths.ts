import { fileURLToPath } from "node:url";

// Where the email templates and the built admin page are, from the compiled
// file in dist/examples/node-backend/: the templates stay in the source tree,
// Vite builds the page next to this directory (dist/examples/admin-link-generator/).

export const TEMPLATES_DIR = fileURLToPath(new URL("../../../examples/node-backend/templates/", import.meta.url));
export const ADMIN_PAGE_DIR = fileURLToPath(new URL("../admin-link-generator/", import.meta.url));
