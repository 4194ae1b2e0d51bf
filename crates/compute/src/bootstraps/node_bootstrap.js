// tsumiki's built-in runtime for nodejs functions.
//
// It speaks the Lambda Runtime API (AWS_LAMBDA_RUNTIME_API) the way AWS's own runtime does:
// loads the handler named by _HANDLER once (CommonJS or ES module), then loops over
// invocation/next, calling the handler (async or callback style) with the event and a context
// object, and posts the result or AWS's error shape. Node's standard library only.
"use strict";

const http = require("http");
const path = require("path");
const fs = require("fs");
const { pathToFileURL } = require("url");

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
      errorMessage: `${handler} is undefined or not exported`,
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

function runHandler(fn, event, context) {
  return new Promise((resolve, reject) => {
    let settled = false;
    const callback = (err, result) => {
      if (settled) return;
      settled = true;
      if (err !== undefined && err !== null) reject(err);
      else resolve(result);
    };
    context.succeed = (r) => callback(null, r);
    context.fail = (e) => callback(e || new Error("handled"));
    context.done = (e, r) => callback(e, r);
    try {
      const out = fn(event, context, callback);
      if (out && typeof out.then === "function") {
        out.then((r) => callback(null, r), (e) => callback(e === undefined ? new Error("undefined") : e));
      } else if (fn.length < 3) {
        callback(null, out);
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
        "Lambda-Runtime-Function-Error-Type": "Runtime.UnhandledPromiseRejection",
      });
    }
  } finally {
    process.exit(129);
  }
});

main().catch((e) => {
  logLine("ERROR", [String(e && e.stack ? e.stack : e)]);
  process.exit(1);
});
