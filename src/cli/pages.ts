import { UsageError } from "./failure.js";

// Cursor pagination as the list commands use it: one page, or with --all
// every page, following the server's opaque next_page_token.

export interface Page<T> {
  readonly items: readonly T[];
  readonly nextPageToken: string;
}

export async function readPages<T>(firstToken: string, all: boolean, fetch: (pageToken: string) => Promise<Page<T>>): Promise<Page<T>> {
  const items: T[] = [];
  let token = firstToken;
  for (;;) {
    const page = await fetch(token);
    items.push(...page.items);
    token = page.nextPageToken;
    if (!all || token === "") return { items, nextPageToken: token };
  }
}

export function pageSizeOf(text: string | undefined): number {
  if (text === undefined) return 0;
  if (!/^\d+$/.test(text) || Number(text) < 1) throw new UsageError("--page-size must be a whole number from 1");
  return Number(text);
}
