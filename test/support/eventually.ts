// Retries an operation until it succeeds or a deadline passes: recovery after
// a fault (a database back, a circuit closing), polled, never slept on.

export async function eventually<T>(operation: () => Promise<T>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await operation();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}
