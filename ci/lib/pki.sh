# Certificates for ci/cluster and ci/node (sourced, not run).

# cert CA_DIR OUT_DIR NAME SUBJECT SUBJECT_ALT_NAME EXTENDED_KEY_USAGE: OUT_DIR/NAME.{key,crt} signed by CA_DIR/ca.*
cert() {
  local ca=$1 out=$2; shift 2
  printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=%s\n%s\n' \
    "$4" "${3:+subjectAltName=$3}" > "$out/$1.ext"
  openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$out/$1.key" -out "$out/$1.csr" 2>/dev/null
  openssl x509 -req -in "$out/$1.csr" -CA "$ca/ca.crt" -CAkey "$ca/ca.key" -CAcreateserial -days 2 \
    -extfile "$out/$1.ext" -out "$out/$1.crt" 2>/dev/null
}
