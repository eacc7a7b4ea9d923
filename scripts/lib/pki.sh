# shellcheck shell=bash
# scripts/lib/pki.sh: sourced by scan.sh, and by scripts/bench/bench.py through `bash -c`. After
# `ringtls pki DIR`, adds an RSA-2048 server certificate signed by the same root
# (DIR/server-rsa.pem, DIR/server-rsa.key), for the rows and scans that need an RSA server key.
# The caller defines die().

rsa_server_cert() {
    local pki=$1 days=$2
    cat > "$pki/server-rsa.ext" << 'EXT'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
EXT
    openssl req -new -newkey rsa:2048 -nodes -keyout "$pki/server-rsa.key" -subj "/CN=localhost" \
        -out "$pki/server-rsa.csr" 2> /dev/null
    openssl x509 -req -in "$pki/server-rsa.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" \
        -CAcreateserial -days "$days" -sha256 -extfile "$pki/server-rsa.ext" \
        -out "$pki/server-rsa.pem" 2> /dev/null
    openssl verify -CAfile "$pki/ca.pem" "$pki/server-rsa.pem" > /dev/null ||
        die "the RSA server certificate does not verify against ca.pem"
}
