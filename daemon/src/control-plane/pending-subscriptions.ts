import { NetfenceError } from "@netfence/proto/errors";
import type { AttachmentView } from "../attachments/attachment-view.js";
import type { AttachmentPolicy } from "../policy/policy.js";

interface Entry {
  readonly view: AttachmentView;
  readonly resolve: (policy: AttachmentPolicy) => void;
  readonly reject: (err: NetfenceError) => void;
  readonly timer: NodeJS.Timeout;
}

/**
 * Attachments waiting for their SubscribedAck, each with its own deadline. Whatever happens —
 * ack, invalid ack, timeout, detach, stop — every waiter is settled exactly once.
 */
export class PendingSubscriptions {
  private readonly entries = new Map<string, Entry>();

  /** `onTimeout` builds the rejection (it knows the connection state); called once per expired wait. */
  constructor(private readonly timeoutMs: number, private readonly onTimeout: (view: AttachmentView) => NetfenceError) {}

  /** Registers a wait; rejects ALREADY_EXISTS when the attachment is already waiting. */
  wait(view: AttachmentView): Promise<AttachmentPolicy> {
    if (this.entries.has(view.id)) {
      return Promise.reject(new NetfenceError("ALREADY_EXISTS", `attachment ${view.id} is already waiting for its SubscribedAck`));
    }
    return new Promise<AttachmentPolicy>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.entries.get(view.id)?.timer !== timer) return;
        this.entries.delete(view.id);
        reject(this.onTimeout(view));
      }, this.timeoutMs);
      this.entries.set(view.id, { view, resolve, reject, timer });
    });
  }

  has(id: string): boolean {
    return this.entries.has(id);
  }

  get size(): number {
    return this.entries.size;
  }

  /** Views still waiting (their Subscribed is re-sent after a reconnect). */
  views(): AttachmentView[] {
    return [...this.entries.values()].map((e) => e.view);
  }

  /** Settles one wait with the result of `settle` (a policy, or a thrown NetfenceError). False when nobody waited. */
  settle(id: string, settle: () => AttachmentPolicy): boolean {
    const e = this.entries.get(id);
    if (!e) return false;
    clearTimeout(e.timer);
    this.entries.delete(id);
    let policy: AttachmentPolicy;
    try {
      policy = settle();
    } catch (err) {
      e.reject(NetfenceError.from(err));
      throw err;
    }
    e.resolve(policy);
    return true;
  }

  reject(id: string, err: NetfenceError): boolean {
    const e = this.entries.get(id);
    if (!e) return false;
    clearTimeout(e.timer);
    this.entries.delete(id);
    e.reject(err);
    return true;
  }

  rejectAll(err: (id: string) => NetfenceError): void {
    for (const [id, e] of this.entries) {
      clearTimeout(e.timer);
      e.reject(err(id));
    }
    this.entries.clear();
  }
}
