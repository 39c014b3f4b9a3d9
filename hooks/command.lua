-- command (deploy): runs a command after a certificate was issued or
-- renewed, e.g. --deploy-hook "command:cmd=systemctl reload nginx".
--
-- cmd is split on white space into the program and its arguments and run
-- directly, without a shell: quotes, $VARS, globs, pipes and ; mean
-- nothing. For those, add sh=1 and cmd runs as /bin/sh -c CMD. The
-- environment is the caller's minus luacme's secrets, plus
--   LUACME_CERT_NAME  LUACME_KEY_FILE  LUACME_CERT_FILE
--   LUACME_FULLCHAIN_FILE  LUACME_CHAIN_FILE
--   LUACME_DOMAINS (the certificate's names, space-separated)
-- and, for commands brought from certbot and acme.sh, RENEWED_LINEAGE
-- (the certificate's directory), RENEWED_DOMAINS, CERT_PATH,
-- CERT_KEY_PATH, CA_CERT_PATH, CERT_FULLCHAIN_PATH.
-- A non-zero exit is an error showing the command's stderr.
local hooks = require "luacme.hooks"

local M = {
    description = "deploy: run a command after a certificate changed",
    -- Two certificates of renew --parallel must not reload one server
    -- at the same moment: calls of one cmd wait for each other, unless
    -- parallel=yes. Other work goes on meanwhile (luacme.sched.spawn).
    serial = function(opts)
        return not hooks.truthy(opts.parallel)
    end,
    options = {
        { name = "cmd", required = true,
          help = "the command, split on spaces, no shell" },
        { name = "sh", help = "1: run cmd with /bin/sh -c instead" },
        { name = "timeout", help = "seconds it may take (default 300)" },
        { name = "parallel",
          help = "yes: several runs may overlap (renew --parallel); " ..
              "default one run of cmd at a time" },
    },
}

local function argv_of(opts)
    if hooks.truthy(opts.sh) then return { "/bin/sh", "-c", opts.cmd } end
    local argv = {}
    for w in opts.cmd:gmatch("%S+") do argv[#argv + 1] = w end
    return argv
end

function M.setup(opts)
    if #argv_of(opts) == 0 then return nil, "cmd is empty" end
    local _, err = hooks.seconds(opts.timeout, 300)
    if err then return nil, err end
    return true
end

function M.deploy_cert(cert, opts)
    if cert.changed == false then return true end
    local env = hooks.environment()
    env.LUACME_CERT_NAME = cert.name
    env.LUACME_KEY_FILE = cert.key_file
    env.LUACME_CERT_FILE = cert.cert_file
    env.LUACME_FULLCHAIN_FILE = cert.fullchain_file
    env.LUACME_CHAIN_FILE = cert.chain_file
    env.LUACME_DOMAINS = table.concat(cert.names or cert.domains or {}, " ")
    -- What certbot's deploy hooks and acme.sh's reload commands read,
    -- so an imported one works unchanged.
    env.RENEWED_LINEAGE = cert.cert_file and cert.cert_file:match("^(.*)/")
    env.RENEWED_DOMAINS = env.LUACME_DOMAINS
    env.CERT_PATH, env.CERT_KEY_PATH = cert.cert_file, cert.key_file
    env.CA_CERT_PATH = cert.chain_file
    env.CERT_FULLCHAIN_PATH = cert.fullchain_file
    local res, err = hooks.run(argv_of(opts), { env = env,
        timeout = hooks.seconds(opts.timeout, 300) })
    if not res then return nil, err end
    return true
end

return M
