/**
 * Errors that callers catch. Each names the gRPC status it stands for in
 * `status`; `proto/grpc.ts` `statusFromError` is the one place that turns
 * those names into wire codes.
 *
 * @module
 */

/** A request value broke a rule; `field` names it in the request's own (snake_case) terms. */
export class InvalidArgumentError extends Error {
  /** The gRPC status this error maps to. */
  readonly status = "INVALID_ARGUMENT";
  /** The offending field, e.g. `exposed_ports[1]`. */
  readonly field: string;
  /** The rule it broke, e.g. `must be within 1..65535, got 70000`. */
  readonly rule: string;

  /** Creates the error; the message reads `Invalid FIELD: RULE`. */
  constructor(field: string, rule: string) {
    super(`Invalid ${field}: ${rule}`);
    this.name = "InvalidArgumentError";
    this.field = field;
    this.rule = rule;
  }
}

/** No ready agent in the pool and namespace has a free slot and the requested ports. */
export class NoCapacityError extends Error {
  /** The gRPC status this error maps to. */
  readonly status = "RESOURCE_EXHAUSTED";
  /** The pool that was asked for. */
  readonly pool: string;
  /** The namespace that was asked for. */
  readonly namespace: string;

  /** Creates the error for `pool` in `namespace`; `detail` says why, when known. */
  constructor(pool: string, namespace: string, detail = "has no free capacity") {
    super(`Cannot allocate sandbox as pool "${pool}" in namespace "${namespace}" ${detail}`);
    this.name = "NoCapacityError";
    this.pool = pool;
    this.namespace = namespace;
  }
}

/** The named thing does not exist. */
export class NotFoundError extends Error {
  /** The gRPC status this error maps to. */
  readonly status = "NOT_FOUND";

  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "NotFoundError";
  }
}

/** A different thing already holds the name. */
export class AlreadyExistsError extends Error {
  /** The gRPC status this error maps to. */
  readonly status = "ALREADY_EXISTS";

  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "AlreadyExistsError";
  }
}

/** The request is well formed but the system is not in a state to serve it (e.g. an image the host lacks). */
export class FailedPreconditionError extends Error {
  /** The gRPC status this error maps to. */
  readonly status = "FAILED_PRECONDITION";

  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "FailedPreconditionError";
  }
}

/** A value is valid but past a limit the request set, e.g. a file bigger than its `max_bytes`. */
export class OutOfRangeError extends Error {
  /** The gRPC status this error maps to. */
  readonly status = "OUT_OF_RANGE";

  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "OutOfRangeError";
  }
}

/** A part the request needs (an agent, containerd) cannot be reached. */
export class UnavailableError extends Error {
  /** The gRPC status this error maps to. */
  readonly status = "UNAVAILABLE";

  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "UnavailableError";
  }
}

/** The call carries no valid credential: missing, unknown, expired or revoked. */
export class UnauthenticatedError extends Error {
  /** The gRPC status this error maps to. */
  readonly status = "UNAUTHENTICATED";

  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "UnauthenticatedError";
  }
}

/** The caller is known but may not do this (another namespace, not an admin, another agent's id). */
export class PermissionDeniedError extends Error {
  /** The gRPC status this error maps to. */
  readonly status = "PERMISSION_DENIED";

  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "PermissionDeniedError";
  }
}
