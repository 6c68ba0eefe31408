/**
 * Security options of the OPC UA simulator: which endpoints it offers, who
 * may log in, and whether it accepts unknown client certificates.
 */
import { MessageSecurityMode, SecurityPolicy } from "node-opcua";

/** Security of the simulator's endpoints; absent keys keep node-opcua's defaults. */
export interface OpcuaSimSecurity {
  /** Offered modes (default None, Sign, SignAndEncrypt). */
  securityModes?: Array<"None" | "Sign" | "SignAndEncrypt">;
  /** Offered policies by short name, e.g. `["Basic256Sha256"]` (default node-opcua's list). */
  securityPolicies?: Array<keyof typeof SecurityPolicy>;
  /** Username → password accepted by the server. */
  users?: Record<string, string>;
  /** Anonymous logins (default true). */
  allowAnonymous?: boolean;
  /**
   * Accept client application certificates the server does not know yet
   * (default true: a lab simulator; the agent creates its certificate on its
   * first connect, so it cannot be placed in the server's trust list before).
   * False: unknown client certificates land in the server's `rejected/`.
   */
  acceptClientCertificates?: boolean;
}

/** The OPCUAServer options for `sec`. */
export function serverSecurityOptions(sec: OpcuaSimSecurity) {
  const users = sec.users;
  return {
    ...(sec.securityModes && {
      securityModes: sec.securityModes.map((m) => MessageSecurityMode[m]),
    }),
    ...(sec.securityPolicies && {
      securityPolicies: sec.securityPolicies.map((p) => SecurityPolicy[p]),
    }),
    allowAnonymous: sec.allowAnonymous ?? true,
    ...(users && {
      userManager: {
        isValidUser: (name: string, password: string) =>
          Object.hasOwn(users, name) && users[name] === password,
      },
    }),
  };
}
