/**
 * The attachment id rule: 1 to 63 characters, letters, digits, '_' and '-', starting with a
 * letter or digit. An id names its pin directory /sys/fs/bpf/netfence/<id>/, so it can never be
 * ".", "..", a path, or the host-wide "_host" directory.
 */
export const ATTACHMENT_ID_FORM = "[A-Za-z0-9][A-Za-z0-9_-]{0,62}";

const ATTACHMENT_ID = new RegExp(`^${ATTACHMENT_ID_FORM}$`);

export function isAttachmentId(id: string): boolean {
  return ATTACHMENT_ID.test(id);
}
