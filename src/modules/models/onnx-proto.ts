/**
 * A minimal protobuf writer and reader for the parts of the ONNX schema (onnx/onnx.proto3)
 * that the demo model needs: ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto,
 * ValueInfoProto. Field numbers are from onnx.proto; only wire types 0 (varint) and 2
 * (length-delimited) and 5 (fixed32, for float attributes) are produced.
 */

export const TensorDataType = { FLOAT: 1, UINT8: 2, INT32: 6, INT64: 7 } as const;
export type TensorDataTypeValue = (typeof TensorDataType)[keyof typeof TensorDataType];

const AttributeType = { FLOAT: 1, INT: 2, INTS: 7 } as const;

class Writer {
  private readonly chunks: Uint8Array[] = [];

  private push(b: Uint8Array): void {
    this.chunks.push(b);
  }

  varint(value: number | bigint): void {
    // int64 fields encode negative numbers as 10-byte two's complement.
    let v = BigInt.asUintN(64, BigInt(value));
    const out: number[] = [];
    while (v >= 0x80n) {
      out.push(Number((v & 0x7fn) | 0x80n));
      v >>= 7n;
    }
    out.push(Number(v));
    this.push(Uint8Array.from(out));
  }

  tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  int(field: number, value: number | bigint): void {
    this.tag(field, 0);
    this.varint(value);
  }

  bytes(field: number, value: Uint8Array): void {
    this.tag(field, 2);
    this.varint(value.byteLength);
    this.push(value);
  }

  string(field: number, value: string): void {
    this.bytes(field, new TextEncoder().encode(value));
  }

  float(field: number, value: number): void {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.push(b);
  }

  message(field: number, build: (w: Writer) => void): void {
    const w = new Writer();
    build(w);
    this.bytes(field, w.finish());
  }

  finish(): Uint8Array {
    const total = this.chunks.reduce((n, c) => n + c.byteLength, 0);
    const out = new Uint8Array(total);
    let off = 0;
    for (const c of this.chunks) {
      out.set(c, off);
      off += c.byteLength;
    }
    return out;
  }
}

export interface Tensor {
  readonly name: string;
  readonly dataType: TensorDataTypeValue;
  readonly dims: readonly number[];
  /** Little-endian raw bytes (TensorProto.raw_data). */
  readonly raw: Uint8Array;
}

export type Attribute =
  | { readonly name: string; readonly int: number }
  | { readonly name: string; readonly ints: readonly number[] }
  | { readonly name: string; readonly float: number };

export interface Node {
  readonly opType: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly name?: string;
  readonly attributes?: readonly Attribute[];
}

export interface ValueInfo {
  readonly name: string;
  readonly elemType: TensorDataTypeValue;
  /** A string is a symbolic dimension (dim_param), e.g. "batch". */
  readonly shape: readonly (number | string)[];
}

export interface Model {
  readonly irVersion: number;
  readonly opset: number;
  readonly producer: string;
  readonly graphName: string;
  readonly nodes: readonly Node[];
  readonly initializers: readonly Tensor[];
  readonly inputs: readonly ValueInfo[];
  readonly outputs: readonly ValueInfo[];
  readonly docString?: string;
}

function writeTensor(w: Writer, t: Tensor): void {
  for (const d of t.dims) w.int(1, d); // dims (repeated int64, unpacked is valid proto3 input)
  w.int(2, t.dataType); // data_type
  w.string(8, t.name); // name
  w.bytes(9, t.raw); // raw_data
}

function writeAttribute(w: Writer, a: Attribute): void {
  w.string(1, a.name);
  if ("int" in a) {
    w.int(3, a.int);
    w.int(20, AttributeType.INT);
  } else if ("ints" in a) {
    for (const i of a.ints) w.int(8, i);
    w.int(20, AttributeType.INTS);
  } else {
    w.float(2, a.float);
    w.int(20, AttributeType.FLOAT);
  }
}

function writeValueInfo(w: Writer, v: ValueInfo): void {
  w.string(1, v.name);
  w.message(2, (type) =>
    type.message(1, (tensor) => {
      tensor.int(1, v.elemType);
      tensor.message(2, (shape) => {
        for (const d of v.shape) {
          shape.message(1, (dim) => {
            if (typeof d === "number") dim.int(1, d);
            else dim.string(2, d);
          });
        }
      });
    }),
  );
}

/** Serializes a ModelProto. */
export function encodeModel(m: Model): Uint8Array {
  const w = new Writer();
  w.int(1, m.irVersion); // ir_version
  w.string(2, m.producer); // producer_name
  if (m.docString !== undefined) w.string(6, m.docString); // doc_string
  w.message(7, (g) => {
    // graph
    for (const n of m.nodes) {
      g.message(1, (nw) => {
        for (const i of n.inputs) nw.string(1, i);
        for (const o of n.outputs) nw.string(2, o);
        if (n.name !== undefined) nw.string(3, n.name);
        nw.string(4, n.opType);
        for (const a of n.attributes ?? []) nw.message(5, (aw) => writeAttribute(aw, a));
      });
    }
    g.string(2, m.graphName);
    for (const t of m.initializers) g.message(5, (tw) => writeTensor(tw, t));
    for (const i of m.inputs) g.message(11, (vw) => writeValueInfo(vw, i));
    for (const o of m.outputs) g.message(12, (vw) => writeValueInfo(vw, o));
  });
  w.message(8, (o) => {
    // opset_import: default domain
    o.string(1, "");
    o.int(2, m.opset);
  });
  return w.finish();
}

// ---- reading (enough to get initializers and node list back, for tests and inspection) ----

interface Field {
  readonly field: number;
  readonly wire: number;
  readonly varint?: bigint;
  readonly bytes?: Uint8Array;
}

function* fields(buf: Uint8Array): Generator<Field> {
  let pos = 0;
  const readVarint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (pos >= buf.length) throw new Error("truncated varint");
      const b = buf[pos++] as number;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
      if (shift > 70n) throw new Error("varint too long");
    }
  };
  while (pos < buf.length) {
    const key = Number(readVarint());
    const field = key >>> 3;
    const wire = key & 7;
    if (wire === 0) yield { field, wire, varint: readVarint() };
    else if (wire === 2) {
      const len = Number(readVarint());
      if (pos + len > buf.length) throw new Error("truncated field");
      yield { field, wire, bytes: buf.subarray(pos, pos + len) };
      pos += len;
    } else if (wire === 5) {
      yield { field, wire, bytes: buf.subarray(pos, pos + 4) };
      pos += 4;
    } else if (wire === 1) {
      yield { field, wire, bytes: buf.subarray(pos, pos + 8) };
      pos += 8;
    } else throw new Error(`unsupported wire type ${wire}`);
  }
}

const text = (b: Uint8Array | undefined) => new TextDecoder().decode(b);

export interface DecodedModel {
  readonly opset: number;
  readonly nodes: { opType: string; inputs: string[]; outputs: string[] }[];
  readonly initializers: Map<string, { dataType: number; dims: number[]; raw: Uint8Array }>;
}

/** Parses the graph's nodes and initializers (raw_data tensors only) from a ModelProto. */
export function decodeModel(buf: Uint8Array): DecodedModel {
  let opset = 0;
  const nodes: DecodedModel["nodes"] = [];
  const initializers: DecodedModel["initializers"] = new Map();
  for (const f of fields(buf)) {
    if (f.field === 8 && f.bytes) {
      for (const o of fields(f.bytes)) if (o.field === 2 && o.varint !== undefined) opset = Number(o.varint);
    }
    if (f.field !== 7 || !f.bytes) continue;
    for (const g of fields(f.bytes)) {
      if (g.field === 1 && g.bytes) {
        const n = { opType: "", inputs: [] as string[], outputs: [] as string[] };
        for (const nf of fields(g.bytes)) {
          if (nf.field === 1) n.inputs.push(text(nf.bytes));
          if (nf.field === 2) n.outputs.push(text(nf.bytes));
          if (nf.field === 4) n.opType = text(nf.bytes);
        }
        nodes.push(n);
      }
      if (g.field === 5 && g.bytes) {
        let name = "";
        let dataType = 0;
        const dims: number[] = [];
        let raw: Uint8Array = new Uint8Array(0);
        for (const tf of fields(g.bytes)) {
          if (tf.field === 1 && tf.varint !== undefined) dims.push(Number(BigInt.asIntN(64, tf.varint)));
          if (tf.field === 2 && tf.varint !== undefined) dataType = Number(tf.varint);
          if (tf.field === 8) name = text(tf.bytes);
          if (tf.field === 9 && tf.bytes) raw = tf.bytes;
        }
        initializers.set(name, { dataType, dims, raw });
      }
    }
  }
  return { opset, nodes, initializers };
}
