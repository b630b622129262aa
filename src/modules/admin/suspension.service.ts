import { type AuditActor, recordAudit } from "../../platform/audit.ts";
import { errors } from "../../platform/errors.ts";
import type { InvalidationBus } from "../../platform/invalidation.ts";
import { SUSPENSION_TOPIC, USER_TOPIC } from "../../platform/suspension.ts";
import { CUSTOMER_TOPIC } from "../rate-limit/rate-limits.ts";
import type { CustomerSuspensionRow, SuspensionRepo } from "./suspension.repo.ts";

/** Where a change came from, recorded in the audit entry's `details.source`. */
export type ChangeSource = "api" | "cli";

/** Who acts: the request's principal (API) or nobody in particular (CLI, `SYSTEM_ACTOR`). */
export interface Actor extends AuditActor {
  readonly source: ChangeSource;
}

export interface SuspensionView {
  readonly customer_id: string;
  readonly name: string;
  readonly email: string;
  readonly status: "active" | "suspended";
  readonly suspended_at: string | null;
  readonly suspended_reason: string | null;
  /** Users whose sessions and sign-in the change affects. */
  readonly members: number;
}

export interface SuperuserView {
  readonly user_id: string;
  readonly email: string;
  readonly customer_id: string;
  readonly is_superuser: boolean;
  /** False when the user already had that flag (nothing changed, nothing audited). */
  readonly changed: boolean;
}

export interface SuspensionServiceOptions {
  readonly repo: SuspensionRepo;
  readonly invalidation: InvalidationBus;
  readonly now: () => number;
}

function view(row: CustomerSuspensionRow, members: number): SuspensionView {
  return {
    customer_id: row.id,
    name: row.name,
    email: row.email,
    status: row.suspendedAt === null ? "active" : "suspended",
    suspended_at: row.suspendedAt?.toISOString() ?? null,
    suspended_reason: row.suspendedReason,
    members,
  };
}

/**
 * The operator's suspension of customers and grants of the superuser flag. Each change and its
 * audit entry commit in one transaction; then the invalidation bus tells every instance (cached
 * keys, limits and account rows dropped; a suspended customer's streams closed). Framework-free:
 * the admin routes and the CLI call it.
 */
export class SuspensionService {
  private readonly o: SuspensionServiceOptions;

  constructor(o: SuspensionServiceOptions) {
    this.o = o;
  }

  async suspend(actor: Actor, customerId: string, reason: string): Promise<SuspensionView> {
    const at = new Date(this.o.now());
    const result = await this.o.repo.transaction(async (tx) => {
      const current = await this.o.repo.lockCustomer(tx, customerId);
      if (current === undefined) throw errors.notFound("Customer");
      if (current.suspendedAt !== null) throw errors.alreadySuspended(current.suspendedAt.toISOString());
      if (actor.actorCustomerId === customerId) {
        throw errors.conflict("You cannot suspend your own customer account: it would end your own session.");
      }
      const row = await this.o.repo.setSuspension(tx, customerId, { at, reason });
      const members = await this.o.repo.countMembers(tx, customerId);
      await recordAudit(tx, {
        ...actor,
        action: "customer.suspend",
        targetType: "customer",
        targetId: customerId,
        customerId,
        details: { reason, source: actor.source },
      });
      return view(row, members);
    });
    await this.announce(customerId);
    return result;
  }

  async unsuspend(actor: Actor, customerId: string, reason: string | undefined): Promise<SuspensionView> {
    const result = await this.o.repo.transaction(async (tx) => {
      const current = await this.o.repo.lockCustomer(tx, customerId);
      if (current === undefined) throw errors.notFound("Customer");
      if (current.suspendedAt === null) throw errors.notSuspended();
      const row = await this.o.repo.setSuspension(tx, customerId, null);
      const members = await this.o.repo.countMembers(tx, customerId);
      await recordAudit(tx, {
        ...actor,
        action: "customer.unsuspend",
        targetType: "customer",
        targetId: customerId,
        customerId,
        details: {
          reason: reason ?? null,
          suspended_at: current.suspendedAt.toISOString(),
          suspended_reason: current.suspendedReason,
          source: actor.source,
        },
      });
      return view(row, members);
    });
    await this.announce(customerId);
    return result;
  }

  /**
   * Sets or clears a user's superuser flag. Demoting the last active superuser is refused (409
   * `last_superuser`). The flag is not in the JWT: each request reads it from the user's cached
   * account row, which every instance drops now, so the change applies to the user's next request
   * without ending their sessions.
   */
  async setSuperuser(actor: Actor, userId: string, isSuperuser: boolean): Promise<SuperuserView> {
    const result = await this.o.repo.transaction(async (tx) => {
      await this.o.repo.lockSuperuserChanges(tx);
      const user = await this.o.repo.lockUser(tx, userId);
      if (user === undefined) throw errors.notFound("User");
      const base = { user_id: user.id, email: user.email, customer_id: user.customerId, is_superuser: isSuperuser };
      if (user.isSuperuser === isSuperuser) return { ...base, changed: false };
      if (!isSuperuser && (await this.o.repo.countOtherActiveSuperusers(tx, userId)) === 0) {
        throw errors.lastSuperuser();
      }
      await this.o.repo.setSuperuser(tx, userId, isSuperuser);
      await recordAudit(tx, {
        ...actor,
        action: isSuperuser ? "user.superuser_grant" : "user.superuser_revoke",
        targetType: "user",
        targetId: userId,
        customerId: user.customerId,
        details: { is_superuser: isSuperuser, source: actor.source },
      });
      return { ...base, changed: true };
    });
    if (result.changed) await this.o.invalidation.publish(USER_TOPIC, userId);
    return result;
  }

  /** Every instance: cached keys, limits and account rows of the customer dropped; its streams closed. */
  private async announce(customerId: string): Promise<void> {
    await this.o.invalidation.publish(CUSTOMER_TOPIC, customerId);
    await this.o.invalidation.publish(SUSPENSION_TOPIC, customerId);
  }
}
