// Oracle for crates/policy/tests/differential_iam_simulate.rs.
//
// Reads a JSON array of requests on stdin, in the input format of keycard's
// `policy evaluate` (crates/policy/src/cli.rs):
//
//   {"principal", "action", "resource", "resourceAccount", "context",
//    "identityPolicies", "resourcePolicy", "trustPolicy", "permissionsBoundary",
//    "sessionPolicy", "serviceControlPolicies"}
//
// maps each one onto an @cloud-copilot/iam-simulate `Simulation`, runs it and prints a
// JSON array with one result per request, in order:
//
//   {"result": "Allowed" | "ExplicitlyDenied" | "ImplicitlyDenied", "ignoredContextKeys": [...]}
//   {"error": "<message>", "details": {...}}      when iam-simulate rejects the input
//
// Run: node crates/policy/tests/oracle/simulate.mjs < cases.json
import { anonymousPrincipal, runSimulation } from '@cloud-copilot/iam-simulate'

function readStdin() {
  return new Promise((resolve, reject) => {
    const chunks = []
    process.stdin.on('data', (c) => chunks.push(c))
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    process.stdin.on('error', reject)
  })
}

// A policy may be given as an object or as a JSON string holding the document.
const doc = (p) => (typeof p === 'string' ? JSON.parse(p) : p)
const list = (v) => (v === undefined || v === null ? [] : Array.isArray(v) ? v : [v])

function accountOf(principal) {
  const parts = principal.split(':')
  return parts.length >= 6 ? parts[4] : ''
}

export function toSimulation(c) {
  const anonymous = c.principal === '*' || c.principal.toLowerCase() === 'anonymous'
  const principal = anonymous ? anonymousPrincipal : c.principal
  // keycard: no resourceAccount = the principal's own account.
  const accountId = c.resourceAccount ?? accountOf(c.principal)
  const sessions = list(c.sessionPolicy)
  if (sessions.length > 1) {
    throw new Error('iam-simulate takes a single session policy')
  }
  if (c.trustPolicy && c.resourcePolicy) {
    throw new Error('iam-simulate takes a single resource-side policy')
  }
  const resourcePolicy = c.trustPolicy ?? c.resourcePolicy
  const sim = {
    request: {
      principal,
      action: c.action,
      resource: { resource: c.resource, accountId },
      contextVariables: c.context ?? {}
    },
    identityPolicies: list(c.identityPolicies).map((p, i) => ({
      name: `identityPolicies[${i}]`,
      policy: doc(p)
    })),
    serviceControlPolicies: list(c.serviceControlPolicies).map((level, l) => ({
      orgIdentifier: `level-${l}`,
      policies: level.map((p, i) => ({
        name: `serviceControlPolicies[${l}][${i}]`,
        policy: doc(p)
      }))
    })),
    // No RCP levels: keycard has no RCPs (with zero levels iam-simulate applies none).
    resourceControlPolicies: []
  }
  if (resourcePolicy) sim.resourcePolicy = doc(resourcePolicy)
  if (c.permissionsBoundary) {
    sim.permissionBoundaryPolicies = [
      { name: 'permissionsBoundary', policy: doc(c.permissionsBoundary) }
    ]
  }
  if (sessions.length === 1) sim.sessionPolicy = doc(sessions[0])
  return sim
}

async function simulateOne(c) {
  let sim
  try {
    sim = toSimulation(c)
  } catch (e) {
    return { error: `harness: ${e.message}` }
  }
  try {
    const r = await runSimulation(sim, {})
    if (r.resultType === 'error') {
      const { message, ...details } = r.errors
      return { error: message, details }
    }
    const ignored =
      r.resultType === 'single'
        ? (r.result.ignoredContextKeys ?? [])
        : [...new Set(r.results.flatMap((x) => x.ignoredContextKeys ?? []))]
    return { result: r.overallResult, resultType: r.resultType, ignoredContextKeys: ignored }
  } catch (e) {
    return { error: `exception: ${e && e.message ? e.message : String(e)}` }
  }
}

const input = JSON.parse(await readStdin())
if (!Array.isArray(input)) {
  console.error('simulate.mjs: stdin must be a JSON array of requests')
  process.exit(2)
}
const out = []
for (const c of input) out.push(await simulateOne(c))
process.stdout.write(JSON.stringify(out) + '\n')
