import type { EmailMessage } from "../../platform/email.ts";
import { emailLayout as layout, EMAIL_PRODUCT as PRODUCT } from "../../platform/email-layout.ts";
import type { MeterName } from "./settings.service.ts";

/** Quota alert emails (80 % and 100 % of the included quota). Every value placed in HTML is escaped. */

export interface QuotaAlert {
  readonly to: string;
  readonly meter: MeterName;
  /** 80 or 100. */
  readonly threshold: number;
  readonly used: number;
  readonly included: number;
  /** "2026-12-01": the UTC calendar month. */
  readonly period: string;
  /** Overage on, with this cap: past 100 % the customer is billed per unit instead of refused. */
  readonly overageCap: number | null;
  /** Where the customer changes plan or overage (PUBLIC_BASE_URL/billing). */
  readonly billingUrl: string;
}

const fmt = (n: number) => n.toLocaleString("en-US");

export function quotaAlertEmail(a: QuotaAlert): EmailMessage {
  const what = a.meter === "requests" ? "requests" : "stream robot-seconds";
  const month = a.period.slice(0, 7);
  const title =
    a.threshold >= 100
      ? `You have used all the ${what} included this month`
      : `You have used ${a.threshold} % of the ${what} included this month`;
  const next =
    a.overageCap !== null
      ? `Metered overage is on: further ${what} are served and billed per unit, up to ${fmt(a.overageCap)} beyond the included amount.`
      : a.threshold >= 100
        ? `Further ${what} are refused (HTTP 429) until the month ends (UTC), unless you upgrade or turn on metered overage.`
        : `At 100 % further ${what} are refused (HTTP 429) until the month ends (UTC), unless you upgrade or turn on metered overage.`;
  const paragraphs = [
    `Usage for ${month} (UTC): ${fmt(a.used)} of ${fmt(a.included)} ${what} included in your plan.`,
    next,
    `Manage your plan and overage settings: ${a.billingUrl}`,
  ];
  return {
    kind: `quota_alert_${a.threshold}`,
    to: a.to,
    subject: `${PRODUCT}: ${title.toLowerCase()}`,
    text: `${paragraphs.join("\n\n")}\n\n-- \n${PRODUCT}\n`,
    html: layout(title, paragraphs),
  };
}
