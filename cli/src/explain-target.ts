/**
 * The destination of `netfenced explain`: ADDRESS[:PORT[/PROTO]], IPv6 with a port in brackets
 * ("[2001:db8::1]:443/tcp"). Only the shape is checked here; the daemon validates the address,
 * the port range and the protocol again (and is the one answer for other clients).
 */
export interface ExplainTarget {
  readonly address: string;
  /** 0 = not given. */
  readonly port: number;
  /** "" = not given (the daemon takes tcp when a port is given). */
  readonly protocol: string;
}

const PROTO = /^(tcp|udp|icmp|icmpv6|\d{1,3})$/i;

function portAndProto(text: string, whole: string): { port: number; protocol: string } {
  const slash = text.indexOf("/");
  const portText = slash === -1 ? text : text.slice(0, slash);
  const protocol = slash === -1 ? "" : text.slice(slash + 1);
  if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
    throw new Error(`bad port in "${whole}": "${portText}" is not a port 1-65535`);
  }
  if (slash !== -1 && !PROTO.test(protocol)) throw new Error(`bad protocol in "${whole}": "${protocol}" (tcp, udp, icmp, icmpv6 or a number)`);
  return { port: Number(portText), protocol: protocol.toLowerCase() };
}

export function parseExplainTarget(text: string): ExplainTarget {
  const t = text.trim();
  if (t === "") throw new Error("no address given");
  if (t.startsWith("[")) {
    const close = t.indexOf("]");
    if (close === -1) throw new Error(`bad address "${text}": missing "]"`);
    const address = t.slice(1, close);
    const rest = t.slice(close + 1);
    if (rest === "") return { address, port: 0, protocol: "" };
    if (!rest.startsWith(":")) throw new Error(`bad address "${text}": expected ":PORT" after "]"`);
    return { address, ...portAndProto(rest.slice(1), text) };
  }
  const colons = t.split(":").length - 1;
  if (colons > 1) {
    if (t.includes("/")) throw new Error(`bad address "${text}": an IPv6 address with a port goes in brackets, e.g. [2001:db8::1]:443/tcp`);
    return { address: t, port: 0, protocol: "" };
  }
  if (colons === 0) {
    if (t.includes("/")) throw new Error(`bad address "${text}": explain takes one address, not a prefix (a protocol needs a port: ADDRESS:PORT/PROTO)`);
    return { address: t, port: 0, protocol: "" };
  }
  const colon = t.indexOf(":");
  return { address: t.slice(0, colon), ...portAndProto(t.slice(colon + 1), text) };
}
