/** An error answer of the admin API (status, message, and for an invalid policy every problem). */
export class AdminError extends Error {
  override readonly name = "AdminError";
  constructor(readonly status: number, message: string, readonly problems: readonly string[] = [], readonly currentVersion: number | null = null) {
    super(message);
  }
}

/** The admin API's client (the CLI, tests): JSON in, JSON out, errors as AdminError. */
export class AdminClient {
  constructor(private readonly base: string, private readonly token: string | null = null) {}

  get<T>(path: string): Promise<T> {
    return this.send<T>("GET", path);
  }

  async send<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (this.token !== null) headers["authorization"] = `Bearer ${this.token}`;
    let res: Response;
    try {
      res = await fetch(new URL(path, this.base), { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(30_000) });
    } catch (err) {
      throw new AdminError(0, `admin API at ${this.base} unreachable: ${err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err)}`);
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new AdminError(res.status, `admin API answered ${res.status} with a body that is not JSON`);
    }
    if (!res.ok) {
      const e = json as { error?: string; problems?: string[]; currentVersion?: number | null };
      throw new AdminError(res.status, e.error ?? `HTTP ${res.status}`, e.problems ?? [], e.currentVersion ?? null);
    }
    return json as T;
  }
}
