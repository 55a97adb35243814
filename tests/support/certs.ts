/**
 * Test certificates made with Debian's `openssl` CLI: a CA, a server
 * certificate for `127.0.0.1` and `localhost` signed by it, a client
 * certificate signed by it, and a second, unrelated CA.
 *
 * @module
 */

/** PEM texts made by {@linkcode makeTestCerts}. */
export interface TestCerts {
  /** The CA that signed the server and client certificates. */
  caPem: string;
  /** Server certificate, subjectAltName `IP:127.0.0.1, DNS:localhost`. */
  serverCertPem: string;
  serverKeyPem: string;
  /** Client certificate (extendedKeyUsage clientAuth). */
  clientCertPem: string;
  clientKeyPem: string;
  /** A CA that signed nothing here: trusting it alone must fail. */
  otherCaPem: string;
}

async function openssl(dir: string, args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", {
    args,
    cwd: dir,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    const stderr = new TextDecoder().decode(out.stderr).trim();
    throw new Error(`openssl ${args.join(" ")} failed: ${stderr}`);
  }
}

async function makeCa(dir: string, name: string, subject: string): Promise<void> {
  await openssl(dir, [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.pem`,
    "-days",
    "2",
    "-subj",
    subject,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
}

async function makeLeaf(
  dir: string,
  name: string,
  subject: string,
  extensions: string,
): Promise<void> {
  await openssl(dir, [
    "req",
    "-new",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.csr`,
    "-subj",
    subject,
  ]);
  await Deno.writeTextFile(`${dir}/${name}.ext`, extensions);
  await openssl(dir, [
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    `${name}.pem`,
    "-days",
    "2",
    "-sha256",
    "-extfile",
    `${name}.ext`,
  ]);
}

/**
 * Writes a CA, a server and a client certificate, and an unrelated second CA
 * into `dir` (which must exist), and returns their PEM texts. Keys are
 * unencrypted PKCS#8 P-256 keys; certificates are valid for two days.
 */
export async function makeTestCerts(dir: string): Promise<TestCerts> {
  await makeCa(dir, "ca", "/CN=fsb test CA");
  await makeCa(dir, "other-ca", "/CN=fsb unrelated test CA");
  await makeLeaf(
    dir,
    "server",
    "/CN=fsb test server",
    [
      "basicConstraints=critical,CA:FALSE",
      "keyUsage=critical,digitalSignature",
      "extendedKeyUsage=serverAuth",
      "subjectAltName=IP:127.0.0.1,DNS:localhost",
      "",
    ].join("\n"),
  );
  await makeLeaf(
    dir,
    "client",
    "/CN=fsb test client",
    [
      "basicConstraints=critical,CA:FALSE",
      "keyUsage=critical,digitalSignature",
      "extendedKeyUsage=clientAuth",
      "",
    ].join("\n"),
  );
  const read = (name: string) => Deno.readTextFile(`${dir}/${name}`);
  return {
    caPem: await read("ca.pem"),
    serverCertPem: await read("server.pem"),
    serverKeyPem: await read("server.key"),
    clientCertPem: await read("client.pem"),
    clientKeyPem: await read("client.key"),
    otherCaPem: await read("other-ca.pem"),
  };
}
