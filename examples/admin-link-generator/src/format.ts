const FORMAT = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** An ISO time in the reader's own time zone ("" stays ""). */
export function formatTime(iso: string): string {
  return iso === "" ? "" : FORMAT.format(new Date(iso));
}
