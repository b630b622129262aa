import { type Static, Type } from "typebox";

/** Wire schema of POST /admin/models/reload (docs/models.md, "Live reload"). */

const ids = (description: string) => Type.Array(Type.String(), { description });

export const ReloadResultSchema = Type.Object(
  {
    added: ids("New model ids: built and warmed up before they took traffic."),
    changed: ids(
      "Ids whose parsed definition differs: a new instance was warmed up and swapped in; the old one drains its queue (requests already sent to it finish) and closes.",
    ),
    removed: ids(
      "Ids no longer in the file: 404 `unknown_model` from now on; requests already sent to them finish, then they close.",
    ),
    unchanged: ids("Ids with the same definition: their queues, statistics and backends were not touched."),
    default_model: Type.String({ description: "The default model now." }),
    previous_default_model: Type.String({ description: "The default model before the reload." }),
    duration_ms: Type.Number({ description: "From reading the file to the swap (warm-up included)." }),
    broadcast: Type.Boolean({
      description:
        "True when the other instances sharing this Redis were told to reload too (each reads its own copy of the file and logs its outcome); false without Redis.",
    }),
  },
  {
    additionalProperties: false,
    examples: [
      {
        added: ["openvla-7b-triton-b"],
        changed: ["mock-openvla-7b"],
        removed: ["demo-old"],
        unchanged: ["demo-vla-tiny"],
        default_model: "mock-openvla-7b",
        previous_default_model: "mock-openvla-7b",
        duration_ms: 412.5,
        broadcast: true,
      },
    ],
  },
);
export type ReloadResult = Static<typeof ReloadResultSchema>;
