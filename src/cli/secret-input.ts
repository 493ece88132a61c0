import { UsageError } from "./failure.js";

// Secrets the CLI needs from the person (a new password) are never flags,
// which would land in shell history and process listings: on a terminal they
// are asked for without echo; otherwise they are the first line of stdin
// (`printf '%s\n' "$PW" | authlink generate signup ann@example.com`).

export interface Terminal {
  readonly stdin: NodeJS.ReadStream;
  readonly stderr: NodeJS.WritableStream;
}

export async function readSecret(prompt: string, terminal: Terminal): Promise<string> {
  const secret = terminal.stdin.isTTY ? await askWithoutEcho(prompt, terminal) : await firstLineOfStdin(terminal.stdin);
  if (secret === "") throw new UsageError(`${prompt.replace(/:\s*$/, "")}: nothing was given`);
  return secret;
}

/** A new password, asked twice on a terminal; once from stdin. */
export async function readNewPassword(terminal: Terminal): Promise<string> {
  const password = await readSecret("New password: ", terminal);
  if (terminal.stdin.isTTY && (await readSecret("Repeat it: ", terminal)) !== password) {
    throw new UsageError("the passwords do not match");
  }
  return password;
}

/** A yes/no question on a terminal; false when stdin is not one (use --yes in scripts). */
export async function confirm(question: string, terminal: Terminal): Promise<boolean> {
  if (!terminal.stdin.isTTY) return false;
  terminal.stderr.write(`${question} [y/N] `);
  const answer = await readLine(terminal.stdin);
  return /^y(es)?$/i.test(answer.trim());
}

async function firstLineOfStdin(stdin: NodeJS.ReadStream): Promise<string> {
  let text = "";
  for await (const chunk of stdin) {
    text += String(chunk);
    if (text.includes("\n")) break;
  }
  return (text.split(/\r?\n/)[0] ?? "").replace(/\r$/, "");
}

function readLine(stdin: NodeJS.ReadStream): Promise<string> {
  return new Promise((resolve) => {
    let text = "";
    const onData = (chunk: Buffer | string) => {
      text += String(chunk);
      const end = text.indexOf("\n");
      if (end < 0) return;
      stdin.off("data", onData);
      stdin.pause();
      resolve(text.slice(0, end).replace(/\r$/, ""));
    };
    stdin.on("data", onData);
    stdin.resume();
  });
}

function askWithoutEcho(prompt: string, terminal: Terminal): Promise<string> {
  const { stdin, stderr } = terminal;
  return new Promise((resolve, reject) => {
    let secret = "";
    stderr.write(prompt);
    stdin.setRawMode(true);
    stdin.setEncoding("utf8");
    const done = (error?: Error) => {
      stdin.setRawMode(false);
      stdin.off("data", onData);
      stdin.pause();
      stderr.write("\n");
      if (error) reject(error);
      else resolve(secret);
    };
    const onData = (chunk: string) => {
      for (const char of chunk) {
        if (char === "\r" || char === "\n") return done();
        if (char === "\u0003") return done(new UsageError("cancelled"));
        if (char === "\u007f" || char === "\b") secret = secret.slice(0, -1);
        else if (char >= " ") secret += char;
      }
    };
    stdin.on("data", onData);
    stdin.resume();
  });
}
