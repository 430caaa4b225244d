// Module resolution hook (registered by main.mjs with `module.register`).
// A bare import that Node cannot resolve from where it was written is
// retried from the app folder, then from the app's cached environment
// (INFSH_NODE_MODULES, built by crates/infsh-env with npm). ESM ignores
// NODE_PATH, and the environment lives outside the app folder so that the
// app folder is never written to; this is the one place that joins them.
// The runtime itself resolves the app's `zod` the same way.

let fallbacks = [];

export async function initialize(data) {
  fallbacks = data?.fallbacks ?? [];
}

function isBare(specifier) {
  return !/^(\.|\/|[a-zA-Z][a-zA-Z0-9+.-]*:)/.test(specifier);
}

export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (error) {
    if (error?.code !== "ERR_MODULE_NOT_FOUND" || !isBare(specifier)) throw error;
    for (const parentURL of fallbacks) {
      if (parentURL === context.parentURL) continue;
      try {
        return await next(specifier, { ...context, parentURL });
      } catch {}
    }
    throw error;
  }
}
