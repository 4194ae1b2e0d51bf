// tsumiki's built-in runtime for nodejs functions.
//
// It speaks the Lambda Runtime API (AWS_LAMBDA_RUNTIME_API) the way AWS's own runtime does:
// loads the handler named by _HANDLER once (CommonJS or ES module), then loops over
// invocation/next, calling the handler (async or callback style) with the event and a context
// object, and posts the result or AWS's error shape. Node's standard library only.
//
// Response streaming as AWS's runtime offers it: `awslambda.streamifyResponse(handler)` marks a
// handler that takes (event, responseStream, context); the stream is a Writable whose bytes go
// to the Runtime API as one chunked POST (`Lambda-Runtime-Function-Response-Mode: streaming`),
// each write a chunk, and an error after the first byte travels in the trailers.
// `awslambda.HttpResponseStream.from(stream, prelude)` opens the body with the JSON prelude
// (statusCode, headers, cookies) and 8 NUL bytes, for function URLs.
"use strict";

const http = require("http");
const path = require("path");
const fs = require("fs");
const { pathToFileURL } = require("url");
const { Writable } = require("stream");

const [HOST, PORT] = process.env.AWS_LAMBDA_RUNTIME_API.split(":");
const PREFIX = "/2018-06-01/runtime";
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
let requestId = "";

function call(method, urlPath, body, headers) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: HOST, port: Number(PORT), method, path: PREFIX + urlPath, agent, headers: headers || {} },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

const STREAMING = Symbol.for("aws.lambda.runtime.handler.streaming");
const PRELUDE_CONTENT_TYPE = "application/vnd.awslambda.http-integration-response";

class HttpResponseStream {
  static from(underlying, prelude) {
    underlying.setContentType(PRELUDE_CONTENT_TYPE);
    underlying._onBeforeFirstWrite = (write) => {
      write(JSON.stringify(prelude || {}));
      write(Buffer.alloc(8));
    };
    return underlying;
  }
}

globalThis.awslambda = {
  streamifyResponse(handler, options) {
    handler[STREAMING] = "response";
    if (options && options.highWaterMark) handler.highWaterMark = options.highWaterMark;
    return handler;
  },
  HttpResponseStream,
};

// The Writable a streaming handler writes to. The POST opens at the first write (or end), so
// setContentType works until then.
function responseStream(id) {
  let req = null;
  let contentType = "application/octet-stream";
  let settle;
  const done = new Promise((resolve, reject) => {
    settle = { resolve, reject };
  });
  const open = () => {
    if (req) return;
    req = http.request(
      {
        host: HOST,
        port: Number(PORT),
        method: "POST",
        path: `${PREFIX}/invocation/${id}/response`,
        agent,
        headers: {
          "Lambda-Runtime-Function-Response-Mode": "streaming",
          "Transfer-Encoding": "chunked",
          "Content-Type": contentType,
          Trailer: "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body",
        },
      },
      (res) => {
        res.resume();
        res.on("end", settle.resolve);
        res.on("error", settle.reject);
      },
    );
    req.on("error", settle.reject);
    req.flushHeaders();
    const before = stream._onBeforeFirstWrite;
    stream._onBeforeFirstWrite = null;
    if (before) before((c) => req.write(c));
  };
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      open();
      req.write(chunk, callback);
    },
    final(callback) {
      open();
      req.end();
      callback();
    },
  });
  stream.setContentType = (type) => {
    contentType = type;
  };
  stream.opened = () => req !== null;
  stream.done = done;
  // Ends the stream with an error the caller sees after the bytes already sent.
  stream.fail = (payload) => {
    open();
    if (req.writableEnded) return;
    req.addTrailers({
      "Lambda-Runtime-Function-Error-Type": payload.errorType,
      "Lambda-Runtime-Function-Error-Body": Buffer.from(JSON.stringify(payload)).toString("base64"),
    });
    req.end();
  };
  return stream;
}

async function runStreaming(fn, event, context) {
  const stream = responseStream(requestId);
  try {
    await fn(event, stream, context);
    if (!stream.writableEnded) stream.end();
    await new Promise((resolve, reject) => {
      if (stream.writableFinished) return resolve();
      stream.on("finish", resolve);
      stream.on("error", reject);
    });
    await stream.done;
  } catch (e) {
    const payload = errorPayload(e);
    logLine("ERROR", [`Invoke Error \t${JSON.stringify(payload)}`]);
    if (stream.opened()) {
      stream.fail(payload);
      await stream.done.catch(() => {});
    } else {
      await call("POST", `/invocation/${requestId}/error`, JSON.stringify(payload), {
        "Lambda-Runtime-Function-Error-Type": payload.errorType,
      });
    }
  }
}

// One message stays one log event: newlines become carriage returns, as on AWS.
function logLine(level, args) {
  const util = require("util");
  const text = util.format(...args).replace(/\n/g, "\r");
  process.stdout.write(`${new Date().toISOString()}\t${requestId || "undefined"}\t${level}\t${text}\n`);
}
console.log = (...a) => logLine("INFO", a);
console.info = (...a) => logLine("INFO", a);
console.warn = (...a) => logLine("WARN", a);
console.error = (...a) => logLine("ERROR", a);
console.debug = (...a) => logLine("DEBUG", a);
console.trace = (...a) => logLine("TRACE", a);

function errorPayload(err) {
  if (err instanceof Error) {
    return {
      errorType: err.name || "Error",
      errorMessage: err.message,
      trace: (err.stack || "").split("\n"),
    };
  }
  return { errorType: typeof err === "string" ? "string" : typeof err, errorMessage: String(err), trace: [] };
}

async function initError(payload) {
  logLine("ERROR", [`Uncaught Exception \t${JSON.stringify(payload)}`]);
  await call("POST", "/init/error", JSON.stringify(payload), {
    "Lambda-Runtime-Function-Error-Type": payload.errorType,
  });
  process.exit(1);
}

async function loadHandler() {
  const handler = process.env._HANDLER || "";
  const root = process.env.LAMBDA_TASK_ROOT || process.cwd();
  const base = path.basename(handler);
  const dot = base.indexOf(".");
  if (dot < 0) {
    return initError({
      errorType: "Runtime.MalformedHandlerName",
      errorMessage: `Bad handler ${handler}`,
      trace: [],
    });
  }
  const modulePath = path.join(path.dirname(handler), base.slice(0, dot));
  const names = base.slice(dot + 1).split(".");
  let mod;
  try {
    const full = path.resolve(root, modulePath);
    const candidates = [".js", ".mjs", ".cjs"].map((ext) => full + ext);
    const file = candidates.find((c) => fs.existsSync(c));
    if (!file) {
      const err = new Error(`Cannot find module '${modulePath}'`);
      err.name = "Runtime.ImportModuleError";
      throw err;
    }
    if (file.endsWith(".mjs")) {
      mod = await import(pathToFileURL(file).href);
    } else {
      try {
        mod = require(file);
      } catch (e) {
        if (e && (e.code === "ERR_REQUIRE_ESM" || e.code === "ERR_REQUIRE_ASYNC_MODULE")) {
          mod = await import(pathToFileURL(file).href);
        } else {
          throw e;
        }
      }
    }
  } catch (e) {
    const payload = errorPayload(e);
    if (payload.errorType !== "SyntaxError") {
      payload.errorMessage = `Error: ${payload.errorMessage}`;
      payload.errorType = "Runtime.ImportModuleError";
    } else {
      payload.errorType = "Runtime.UserCodeSyntaxError";
    }
    return initError(payload);
  }
  let fn = mod;
  for (const name of names) fn = fn == null ? undefined : fn[name];
  if (typeof fn !== "function" && mod && mod.default) {
    let alt = mod.default;
    for (const name of names) alt = alt == null ? undefined : alt[name];
    if (typeof alt === "function") fn = alt;
  }
  if (typeof fn !== "function") {
    return initError({
      errorType: "Runtime.HandlerNotFound",
      errorMessage: fn
        ? `${handler} is not a function`
        : `${handler} is undefined or not exported`,
      trace: [],
    });
  }
  return fn;
}

function parseHeader(value) {
  if (!value) return undefined;
  try {
    return JSON.parse(value);
  } catch {
    return undefined;
  }
}

// What to do when the event loop runs dry while an invocation is open (AWS's runtime keeps
// the same single `beforeExit` listener): Node fires `beforeExit` only then, because an open
// `next` request keeps the loop alive between invocations.
let onEmptyLoop = null;
process.on("beforeExit", () => {
  const run = onEmptyLoop;
  onEmptyLoop = null;
  if (run) run();
});

function nodeJsExit() {
  const err = new Error(
    "The Lambda runtime client detected an unexpected Node.js exit code. This is most commonly " +
      "caused by a Promise that was never settled.",
  );
  err.name = "Runtime.NodeJsExit";
  return err;
}

// Runs one invocation as AWS's Node.js runtime does: an async handler answers with its promise;
// any other handler answers through the callback (or context.succeed/fail/done), and a callback
// success is sent once the event loop is empty unless context.callbackWaitsForEmptyEventLoop is
// false. A handler that never answers before the loop runs dry gets null, or Runtime.NodeJsExit
// if it is async. The first answer wins.
function runHandler(fn, event, context) {
  const isAsync = fn.constructor && fn.constructor.name === "AsyncFunction";
  return new Promise((resolve, reject) => {
    let answered = false;
    const settle = (err, result) => {
      onEmptyLoop = null;
      if (err !== undefined && err !== null) reject(err);
      else resolve(result);
    };
    const once = (f) => (...args) => {
      if (answered) return;
      answered = true;
      f(...args);
    };
    let waitForEmptyLoop = true;
    Object.defineProperty(context, "callbackWaitsForEmptyEventLoop", {
      get: () => waitForEmptyLoop,
      set: (v) => {
        waitForEmptyLoop = v;
      },
      enumerable: true,
      configurable: true,
    });
    const callback = once((err, result) => {
      if ((err !== undefined && err !== null) || !waitForEmptyLoop) {
        settle(err, result);
      } else {
        onEmptyLoop = () => setImmediate(() => settle(null, result));
      }
    });
    const done = once((err, result) => settle(err, result));
    context.done = done;
    context.succeed = (r) => done(null, r);
    context.fail = (e) => done(e === undefined || e === null ? "handled" : e);
    onEmptyLoop = () => {
      answered = true;
      if (isAsync) settle(nodeJsExit());
      else settle(null, null);
    };
    try {
      const out = fn(event, context, callback);
      if (out && typeof out.then === "function") {
        out.then(context.succeed, context.fail);
      }
    } catch (e) {
      callback(e);
    }
  });
}

async function main() {
  const fn = await loadHandler();
  for (;;) {
    const next = await call("GET", "/invocation/next");
    const h = next.headers;
    requestId = h["lambda-runtime-aws-request-id"] || "";
    process.env._X_AMZN_TRACE_ID = h["lambda-runtime-trace-id"] || "";
    const deadline = Number(h["lambda-runtime-deadline-ms"] || 0);
    const context = {
      callbackWaitsForEmptyEventLoop: true,
      functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
      functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
      invokedFunctionArn: h["lambda-runtime-invoked-function-arn"],
      memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
      awsRequestId: requestId,
      logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
      logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
      identity: parseHeader(h["lambda-runtime-cognito-identity"]),
      clientContext: parseHeader(h["lambda-runtime-client-context"]),
      getRemainingTimeInMillis: () => Math.max(deadline - Date.now(), 0),
    };
    let event;
    try {
      event = next.body.length ? JSON.parse(next.body.toString("utf8")) : {};
    } catch (e) {
      event = next.body.toString("utf8");
    }
    if (fn[STREAMING] === "response") {
      await runStreaming(fn, event, context);
      continue;
    }
    try {
      const result = await runHandler(fn, event, context);
      const body = result === undefined ? "null" : JSON.stringify(result);
      await call("POST", `/invocation/${requestId}/response`, body === undefined ? "null" : body);
    } catch (e) {
      const payload = errorPayload(e);
      logLine("ERROR", [`Invoke Error \t${JSON.stringify(payload)}`]);
      await call("POST", `/invocation/${requestId}/error`, JSON.stringify(payload), {
        "Lambda-Runtime-Function-Error-Type": payload.errorType,
      });
    }
  }
}

process.on("uncaughtException", async (e) => {
  const payload = errorPayload(e);
  logLine("ERROR", [`Uncaught Exception \t${JSON.stringify(payload)}`]);
  try {
    if (requestId) {
      await call("POST", `/invocation/${requestId}/error`, JSON.stringify(payload), {
        "Lambda-Runtime-Function-Error-Type": payload.errorType,
      });
    }
  } finally {
    process.exit(129);
  }
});

// As AWS's runtime: a rejection nobody handles fails the invocation as
// Runtime.UnhandledPromiseRejection (its message is the reason as a string), and the environment
// ends.
process.on("unhandledRejection", async (reason) => {
  const err = new Error(String(reason));
  err.name = "Runtime.UnhandledPromiseRejection";
  const payload = errorPayload(err);
  logLine("ERROR", [`Unhandled Promise Rejection \t${JSON.stringify(payload)}`]);
  try {
    const target = requestId ? `/invocation/${requestId}/error` : "/init/error";
    await call("POST", target, JSON.stringify(payload), {
      "Lambda-Runtime-Function-Error-Type": payload.errorType,
    });
  } finally {
    process.exit(128);
  }
});

main().catch((e) => {
  logLine("ERROR", [String(e && e.stack ? e.stack : e)]);
  process.exit(1);
});
