// consts.go: every code and flag of the milter protocol (mfdef.h, mfapi.h).

package milterproto

// Command codes sent by the MTA to the filter (SMFIC_*).
const (
	CmdAbort   byte = 'A' // SMFIC_ABORT: end the current message, no reply
	CmdBody    byte = 'B' // SMFIC_BODY: a body chunk
	CmdConnect byte = 'C' // SMFIC_CONNECT
	CmdMacro   byte = 'D' // SMFIC_MACRO: macros for the next command, no reply
	CmdEOB     byte = 'E' // SMFIC_BODYEOB: end of message
	CmdHelo    byte = 'H' // SMFIC_HELO
	CmdQuitNC  byte = 'K' // SMFIC_QUIT_NC: quit, a new connection follows (v6)
	CmdHeader  byte = 'L' // SMFIC_HEADER
	CmdMail    byte = 'M' // SMFIC_MAIL
	CmdEOH     byte = 'N' // SMFIC_EOH
	CmdOptNeg  byte = 'O' // SMFIC_OPTNEG
	CmdQuit    byte = 'Q' // SMFIC_QUIT, no reply
	CmdRcpt    byte = 'R' // SMFIC_RCPT
	CmdData    byte = 'T' // SMFIC_DATA (v4)
	CmdUnknown byte = 'U' // SMFIC_UNKNOWN (v3)
)

// Reply codes sent by the filter to the MTA (SMFIR_*).
const (
	RespAddRcpt    byte = '+' // SMFIR_ADDRCPT
	RespDelRcpt    byte = '-' // SMFIR_DELRCPT
	RespAddRcptPar byte = '2' // SMFIR_ADDRCPT_PAR (v6)
	RespShutdown   byte = '4' // SMFIR_SHUTDOWN: 421 (Postfix only)
	RespAccept     byte = 'a' // SMFIR_ACCEPT
	RespReplBody   byte = 'b' // SMFIR_REPLBODY
	RespContinue   byte = 'c' // SMFIR_CONTINUE
	RespDiscard    byte = 'd' // SMFIR_DISCARD
	RespChgFrom    byte = 'e' // SMFIR_CHGFROM (v6)
	RespConnFail   byte = 'f' // SMFIR_CONN_FAIL (defined, never valid on the wire)
	RespAddHeader  byte = 'h' // SMFIR_ADDHEADER
	RespInsHeader  byte = 'i' // SMFIR_INSHEADER
	RespSetSymList byte = 'l' // SMFIR_SETSYMLIST (defined, never valid on the wire)
	RespChgHeader  byte = 'm' // SMFIR_CHGHEADER
	RespProgress   byte = 'p' // SMFIR_PROGRESS
	RespQuarantine byte = 'q' // SMFIR_QUARANTINE
	RespReject     byte = 'r' // SMFIR_REJECT
	RespSkip       byte = 's' // SMFIR_SKIP (v6)
	RespTempfail   byte = 't' // SMFIR_TEMPFAIL
	RespReplyCode  byte = 'y' // SMFIR_REPLYCODE
	RespOptNeg     byte = 'O' // SMFIR_OPTNEG
)

// Address families in SMFIC_CONNECT (SMFIA_*).
const (
	FamilyUnknown byte = 'U'
	FamilyUnix    byte = 'L'
	FamilyInet    byte = '4'
	FamilyInet6   byte = '6'
)

// Action is the SMFIF_* action mask (word 2 of OPTNEG).
type Action uint32

// SMFIF_* flags.
const (
	ActAddHeaders    Action = 0x001 // SMFIF_ADDHDRS: add and insert headers
	ActChangeBody    Action = 0x002 // SMFIF_CHGBODY: replace the body
	ActAddRcpt       Action = 0x004 // SMFIF_ADDRCPT
	ActDelRcpt       Action = 0x008 // SMFIF_DELRCPT
	ActChangeHeaders Action = 0x010 // SMFIF_CHGHDRS: change and delete headers
	ActQuarantine    Action = 0x020 // SMFIF_QUARANTINE
	ActChangeFrom    Action = 0x040 // SMFIF_CHGFROM (v6)
	ActAddRcptPar    Action = 0x080 // SMFIF_ADDRCPT_PAR (v6)
	ActSetSymList    Action = 0x100 // SMFIF_SETSYMLIST (v6)

	ActV1Mask  Action = 0x0F  // SMFI_V1_ACTS
	ActV2Mask  Action = 0x3F  // SMFI_V2_ACTS
	ActAllMask Action = 0x1FF // SMFI_CURR_ACTS

	// ActModify is every action that changes the message or its envelope
	// (quarantine and symlist are not modifications).
	ActModify = ActAddHeaders | ActChangeBody | ActAddRcpt | ActDelRcpt |
		ActChangeHeaders | ActChangeFrom | ActAddRcptPar
)

// Protocol is the SMFIP_* protocol mask (word 3 of OPTNEG).
type Protocol uint32

// SMFIP_* flags.
const (
	ProtoNoConnect   Protocol = 0x00000001
	ProtoNoHelo      Protocol = 0x00000002
	ProtoNoMail      Protocol = 0x00000004
	ProtoNoRcpt      Protocol = 0x00000008
	ProtoNoBody      Protocol = 0x00000010
	ProtoNoHeaders   Protocol = 0x00000020
	ProtoNoEOH       Protocol = 0x00000040
	ProtoNRHeader    Protocol = 0x00000080
	ProtoNoUnknown   Protocol = 0x00000100
	ProtoNoData      Protocol = 0x00000200
	ProtoSkip        Protocol = 0x00000400
	ProtoRcptRej     Protocol = 0x00000800
	ProtoNRConnect   Protocol = 0x00001000
	ProtoNRHelo      Protocol = 0x00002000
	ProtoNRMail      Protocol = 0x00004000
	ProtoNRRcpt      Protocol = 0x00008000
	ProtoNRData      Protocol = 0x00010000
	ProtoNRUnknown   Protocol = 0x00020000
	ProtoNREOH       Protocol = 0x00040000
	ProtoNRBody      Protocol = 0x00080000
	ProtoHdrLeadSpc  Protocol = 0x00100000
	ProtoMDS256K     Protocol = 0x10000000
	ProtoMDS1M       Protocol = 0x20000000
	ProtoInternal    Protocol = 0x70000000 // SMFI_INTERNAL
	ProtoTest        Protocol = 0x80000000 // SMFIP_TEST (FFR)
	ProtoV1Mask      Protocol = 0x3F
	ProtoV2Mask      Protocol = 0x7F
	ProtoAllMask     Protocol = 0x1FFFFF // SMFI_CURR_PROT
	ProtoNoEventMask          = ProtoNoConnect | ProtoNoHelo | ProtoNoMail | ProtoNoRcpt | ProtoNoBody |
		ProtoNoHeaders | ProtoNoEOH | ProtoNoUnknown | ProtoNoData
	ProtoNoReplyMask = ProtoNRHeader | ProtoNRConnect | ProtoNRHelo | ProtoNRMail | ProtoNRRcpt |
		ProtoNRData | ProtoNRUnknown | ProtoNREOH | ProtoNRBody
)

// Stage is a macro stage number (SMFIM_*), used in the OPTNEG symlist.
type Stage uint32

// SMFIM_* stages. Note that EOM (5) comes before EOH (6).
const (
	StageConnect Stage = 0
	StageHelo    Stage = 1
	StageEnvFrom Stage = 2
	StageEnvRcpt Stage = 3
	StageData    Stage = 4
	StageEOM     Stage = 5
	StageEOH     Stage = 6
	NumStages          = 7
)

var stageNames = [...]string{"connect", "helo", "envfrom", "envrcpt", "data", "eom", "eoh"}

// String returns the stage's name as MTA configurations spell it
// ("envfrom"), or "unknown".
func (s Stage) String() string {
	if s < NumStages {
		return stageNames[s]
	}
	return "unknown"
}

// Sizes.
const (
	MaxChunk = 65535   // MILTER_CHUNK_SIZE: largest body chunk an MTA sends
	MDS64K   = 65535   // MILTER_MDS_64K
	MDS256K  = 262143  // MILTER_MDS_256K
	MDS1M    = 1048575 // MILTER_MDS_1M
	// DefaultMaxData is the default limit on the data of one packet read
	// from an MTA: one full body chunk plus headroom for large macro sets.
	DefaultMaxData = 1 << 20
	// MaxVersion is the highest protocol version this codec speaks.
	MaxVersion = 6
	// MinVersion is the lowest protocol version this codec speaks.
	MinVersion = 2
)
