/**
 * The one set of `@grpc/proto-loader` options for every `.proto` of this package: the client API
 * (`proto/registry/v1/registry.proto`, loaded by `src/api/registry-proto.ts`), the peer protocol
 * (`proto/raft/v1/raft.proto`, loaded by `src/transport/codec.ts`), the reflection service
 * (`src/api/grpc-health.ts`), and the type generator (`scripts/gen-proto.ts`, `npm run gen:proto`), which
 * turns the same options into `proto-loader-gen-types` flags so the types in `src/gen/` describe
 * exactly the objects the loaders produce.
 *
 * Decoded messages therefore carry every field: field names as in the `.proto` (keepCase), 64-bit
 * integers as `number` (longs: Number; the codecs check they are safe integers), enums as their
 * names (enums: String), strings `''`, numbers `0`, repeated `[]`, maps `{}` (defaults, arrays,
 * objects), an unset message field `null`, bytes as `Buffer`, and for a oneof a virtual field
 * naming the member that is set (oneofs).
 *
 * Imports nothing at run time, so the generator script can be compiled with it alone.
 */
import type { Options } from '@grpc/proto-loader';

/** The `@grpc/proto-loader` options of every proto loader here and of `proto-loader-gen-types`. */
export const PROTO_LOADER_OPTIONS: Readonly<Options> = Object.freeze({
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  arrays: true,
  objects: true,
  oneofs: true,
});
