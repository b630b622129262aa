import type { EmailMessage } from "../../platform/email.ts";
import type { MeterName } from "./settings.service.ts";

/** Quota alert emails (80 % and 100 % of the included quota). Every value placed in HTML is escaped. */
const PRODUCT = "VLA Inference API";

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

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
    html: `<!doctype html>
<html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>
<body style="font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;line-height:1.5;color:#222;max-width:560px;margin:0 auto;padding:24px">
<h1 style="font-size:20px;margin:0 0 16px">${escapeHtml(title)}</h1>
${paragraphs.map((p) => `<p style="margin:0 0 16px">${escapeHtml(p)}</p>`).join("\n")}
<p style="margin:32px 0 0;font-size:12px;color:#888">${PRODUCT}</p>
</body></html>
`,
  };
}
